// The inventory tab (seed 002's web UI): every product's stock and status, and the
// newest alerts.

import { cards, el, fill, fmt, sortBy, table } from "./ui.js";

export const relations = ["inventory_current", "inventory_alerts"];

const SHOWN_ALERTS = 100;

export function mount(section, live) {
  let previous = null;
  const summary = el("div");
  const products = el("div", { class: "panel scroll" });
  const alerts = el("div", { class: "panel scroll" });
  fill(section, el("h2", {}, "Inventory"), summary,
    el("div", { class: "grid2" }, el("div", {}, el("h3", {}, "Products"), products),
      el("div", {}, el("h3", {}, `Newest alerts (up to ${SHOWN_ALERTS})`), alerts)));

  return function render(visible) {
    if (visible === false) return;
    const rows = sortBy(live.rows("inventory_current"), "product_id");
    const byStatus = (status) => rows.filter((r) => r.status === status).length;
    const allAlerts = live.rows("inventory_alerts");
    fill(summary, cards([["Products", fmt.count(rows.length), "inventory-products"],
      ["In stock", fmt.count(byStatus("IN_STOCK"))], ["Low stock", fmt.count(byStatus("LOW_STOCK"))],
      ["Out of stock", fmt.count(byStatus("OUT_OF_STOCK"))],
      ["Alerts kept", fmt.count(allAlerts.length), "inventory-alerts"]]));
    const products_ = table([
      { key: "product_id", label: "Product" }, { key: "name", label: "Name" }, { key: "category", label: "Category" },
      { key: "price", label: "Price", format: fmt.money, num: true },
      { key: "inventory", label: "Inventory", format: fmt.count, num: true },
      { key: "status", label: "Status", format: fmt.badge }, { key: "last_update", label: "Updated", format: fmt.time },
    ], rows, { keyOf: (r) => r.product_id, previous, testid: "inventory" });
    previous = products_.signatures;
    fill(products, products_);
    fill(alerts, table([
      { key: "alert_time", label: "Time", format: fmt.time }, { key: "severity", label: "Severity", format: fmt.badge },
      { key: "alert_type", label: "Alert" }, { key: "product_id", label: "Product" }, { key: "message", label: "Message" },
    ], sortBy(allAlerts, "alert_time", true).slice(0, SHOWN_ALERTS), { testid: "alerts" }));
  };
}
