// The retail tab (seed 000): each product's newest price and stock status, and sales.

import { barChart } from "./charts.js";
import { cards, el, fill, fmt, latestBy, sortBy, table } from "./ui.js";

export const relations = ["dynamic_pricing_enriched", "product_stock_status", "sales_profit"];

export function mount(section, live) {
  const summary = el("div");
  const prices = el("div", { class: "panel scroll" });
  const stock = el("div", { class: "panel scroll" });
  const sales = el("div", { class: "panel" });
  const chart = el("div", { class: "panel" });
  fill(section, el("h2", {}, "Retail"), summary,
    el("h3", {}, "Prices (each product's newest minute)"), prices,
    el("div", { class: "grid2" }, el("div", {}, el("h3", {}, "Stock status"), stock),
      el("div", {}, el("h3", {}, "Sales"), sales, chart)));

  return function render(visible) {
    if (visible === false) return;
    const priced = sortBy(latestBy(live.rows("dynamic_pricing_enriched"), "product_id", "inventory_window"), "product_id");
    const status = sortBy(latestBy(live.rows("product_stock_status"), "product_id", "inventory_window"), "product_id");
    const profit = sortBy(live.rows("sales_profit"), "product_id");
    const revenue = profit.reduce((t, r) => t + (r.revenue_estimate || 0), 0);
    fill(summary, cards([["Products", fmt.count(status.length), "retail-products"],
      ["Low stock", fmt.count(status.filter((r) => r.stock_level_category === "Low").length)],
      ["Orders (units)", fmt.count(profit.reduce((t, r) => t + (r.total_orders || 0), 0)), "retail-units"],
      ["Revenue estimate", fmt.money(revenue)]]));
    fill(prices, table([
      { key: "product_id", label: "Product" }, { key: "product_name", label: "Name" },
      { key: "inventory_window", label: "Minute", format: fmt.time },
      { key: "base_price", label: "Base", format: fmt.money, num: true },
      { key: "clicks_15m", label: "Clicks 15 min", format: fmt.count, num: true },
      { key: "min_competitor_price", label: "Competitor min", format: fmt.money, num: true },
      { key: "stock_rule_price", label: "Stock rule", format: fmt.money, num: true },
      { key: "final_price", label: "Final price", format: fmt.money, num: true },
    ], priced, { testid: "retail-prices" }));
    fill(stock, table([
      { key: "product_id", label: "Product" }, { key: "product_name", label: "Name" },
      { key: "current_inventory", label: "Inventory", format: fmt.count, num: true },
      { key: "reorder_threshold", label: "Reorder at", format: fmt.count, num: true },
      { key: "stock_level_category", label: "Level", format: fmt.badge },
      { key: "inventory_window", label: "Minute", format: fmt.time },
    ], status, { testid: "retail-stock" }));
    fill(sales, table([
      { key: "product_id", label: "Product" }, { key: "product_name", label: "Name" },
      { key: "total_orders", label: "Units ordered", format: fmt.count, num: true },
      { key: "revenue_estimate", label: "Revenue estimate", format: fmt.money, num: true },
    ], profit, { testid: "retail-sales" }));
    fill(chart, barChart({ categories: profit.map((r) => r.product_name || r.product_id), format: fmt.money,
      series: [{ name: "revenue estimate", values: profit.map((r) => r.revenue_estimate) }] }));
  };
}
