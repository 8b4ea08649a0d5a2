// The e-commerce tab (seed 001): the conversion funnel, revenue over time and
// hourly purchase anomalies.

import { barChart, lineChart } from "./charts.js";
import { cards, el, fill, fmt, sortBy, table } from "./ui.js";

export const relations = ["funnel_analysis", "revenue_tracker", "anomaly_detection", "product_performance"];

const STAGES = [["pageview_count", "Page views"], ["product_view_count", "Product views"],
  ["add_to_cart_count", "Add to cart"], ["checkout_count", "Checkout"], ["purchase_count", "Purchase"]];

export function mount(section, live) {
  const summary = el("div");
  const funnel = el("div", { class: "panel" });
  const revenue = el("div", { class: "panel" });
  const anomalies = el("div", { class: "panel scroll" });
  const products = el("div", { class: "panel scroll" });
  fill(section, el("h2", {}, "E-commerce"), summary,
    el("div", { class: "grid2" }, el("div", {}, el("h3", {}, "Funnel (sessions reaching each stage)"), funnel),
      el("div", {}, el("h3", {}, "Revenue over time (1-hour windows every 5 minutes)"), revenue)),
    el("h3", {}, "Hourly purchases and anomalies"), anomalies,
    el("h3", {}, "Products"), products);

  return function render(visible) {
    if (visible === false) return;
    const [f = {}] = live.rows("funnel_analysis");
    fill(summary, cards([["Sessions", fmt.count(f.total_sessions), "ecommerce-sessions"],
      ["Purchases", fmt.count(f.purchase_count)], ["Overall conversion", fmt.percent(f.overall_conversion_rate)]]));
    fill(funnel, barChart({ categories: STAGES.map(([, label]) => label), format: fmt.count, testid: "funnel-chart",
      series: [{ name: "sessions", values: STAGES.map(([key]) => f[key] ?? 0) }] }),
    table([{ key: "stage", label: "Step" }, { key: "rate", label: "Rate", format: fmt.percent, num: true }], [
      { stage: "page view → product view", rate: f.pageview_to_product_view_rate },
      { stage: "product view → cart", rate: f.product_view_to_cart_rate },
      { stage: "cart → checkout", rate: f.cart_to_checkout_rate },
      { stage: "checkout → purchase", rate: f.checkout_to_purchase_rate },
    ], { testid: "funnel" }));
    const windows = live.rows("revenue_tracker");
    fill(revenue, lineChart({ points: windows.map((w) => ({ x: w.window_start, y: w.total_revenue })),
      format: fmt.money, label: `${windows.length} windows`, testid: "revenue-chart" }));
    fill(anomalies, table([
      { key: "hour", label: "Hour", format: fmt.time }, { key: "event_count", label: "Purchases", format: fmt.count, num: true },
      { key: "avg_count", label: "Average (24 h before)", format: fmt.ratio, num: true },
      { key: "deviation_score", label: "Deviation", format: fmt.ratio, num: true },
      { key: "z_score", label: "z-score", format: fmt.ratio, num: true },
      { key: "is_anomaly", label: "Anomaly", cell: (r) => fmt.badge(r.is_anomaly ? "bad" : "good") },
    ], sortBy(live.rows("anomaly_detection"), "hour", true).slice(0, 48), { testid: "anomalies" }));
    fill(products, table([
      { key: "product_id", label: "Product" }, { key: "name", label: "Name" }, { key: "category", label: "Category" },
      { key: "view_count", label: "Views", format: fmt.count, num: true },
      { key: "cart_adds", label: "Cart adds", format: fmt.count, num: true },
      { key: "purchases", label: "Purchases", format: fmt.count, num: true },
      { key: "estimated_revenue", label: "Estimated revenue", format: fmt.money, num: true },
    ], sortBy(live.rows("product_performance"), "view_count", true), { testid: "ecommerce-products" }));
  };
}
