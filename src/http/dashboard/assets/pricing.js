// The pricing tab (seed 004's Next.js dashboard): live prices (changed products
// flash), set and remove an override with the admin API key, and a product's price
// history from GET /history/{id}.

import { act, adminKey, request } from "./api.js";
import { lineChart } from "./charts.js";
import { cards, el, fill, fmt, sortBy, table } from "./ui.js";

export const relations = ["product_prices", "price_overrides"];

export function mount(section, live) {
  let previous = null;
  const product = el("input", { id: "override-product", placeholder: "PA", size: 8 });
  const price = el("input", { id: "override-price", type: "number", min: "0.01", step: "0.01", placeholder: "199.00" });
  const reason = el("input", { id: "override-reason", placeholder: "manual override" });
  const historyProduct = el("select", { id: "history-product", onchange: () => loadHistory() });
  const chart = el("div", { class: "panel", id: "history-chart" }, el("p", { class: "note" },
    "Pick a product to see its price history (needs the admin API key)."));
  const prices = el("div", { class: "panel" });
  const overrides = el("div", { class: "panel" });
  const summary = el("div");

  const setOverride = (e) => {
    e.preventDefault();
    const body = { product_id: product.value.trim(), override_price: Number(price.value) };
    if (reason.value.trim()) body.reason = reason.value.trim();
    act(() => request("POST", "/override", { body, admin: true }),
      (a) => `Override set: ${a.product_id} at ${fmt.money(a.override_price)}`);
  };
  const removeOverride = (id) => act(() => request("DELETE", `/override/${encodeURIComponent(id)}`, { admin: true }),
    `Override of ${id} removed`);

  fill(section,
    el("h2", {}, "Live prices"), summary,
    el("div", { class: "grid2" },
      el("div", {}, prices),
      el("div", {},
        el("h3", {}, "Price override"),
        el("form", { class: "inline", onsubmit: setOverride },
          el("label", {}, "Product", product), el("label", {}, "Price", price), el("label", {}, "Reason", reason),
          el("button", { class: "primary", type: "submit", id: "set-override" }, "Set override"),
          el("button", { type: "button", id: "remove-override", onclick: () => removeOverride(product.value.trim()) },
            "Remove")),
        el("h3", {}, "Active overrides"), overrides,
        el("h3", {}, "Price history"), el("label", {}, "Product ", historyProduct), chart)));

  async function loadHistory() {
    const id = historyProduct.value;
    if (!id) return;
    if (!adminKey()) {
      fill(chart, el("p", { class: "note" }, "Enter the admin API key (top right) to read the price history."));
      return;
    }
    const rows = await act(() => request("GET", `/history/${encodeURIComponent(id)}?limit=500`, { admin: true }));
    if (!rows) return;
    // Newest first, at most 500; base rows have no event time.
    const history = rows.filter((r) => r.event_time);
    fill(chart, lineChart({
      points: history.map((r) => ({ x: r.event_time, y: r.price })),
      format: fmt.money, label: `${id}: ${history.length} prices`, testid: "history-svg",
    }));
  }

  function render(visible) {
    if (visible === false) return;
    const rows = sortBy(live.rows("product_prices"), "product_id");
    const table_ = table([
      { key: "product_id", label: "Product" },
      { key: "price", label: "Price", format: fmt.money, num: true },
      { key: "demand", label: "Demand", format: fmt.count, num: true },
      { key: "price_source", label: "Source", format: fmt.badge },
    ], rows, { keyOf: (r) => r.product_id, previous, testid: "prices" });
    previous = table_.signatures;
    fill(prices, table_);
    const active = sortBy(live.rows("price_overrides"), "product_id");
    fill(overrides, active.length ? table([
      { key: "product_id", label: "Product" },
      { key: "override_price", label: "Price", format: fmt.money, num: true },
      { key: "reason", label: "Reason" },
      { key: "set_time", label: "Set", format: fmt.time },
      { key: "remove", label: "", cell: (r) => el("button", { onclick: () => removeOverride(r.product_id) }, "Remove") },
    ], active, { testid: "overrides" }) : el("p", { class: "note" }, "No override is active."));
    fill(summary, cards([["Products", fmt.count(rows.length), "price-products"],
      ["Overridden", fmt.count(active.length), "price-overridden"]]));
    const ids = rows.map((r) => r.product_id);
    if (historyProduct.options.length !== ids.length + 1) {
      const chosen = historyProduct.value;
      fill(historyProduct, el("option", { value: "" }, "—"), ids.map((id) => el("option", { value: id, selected: id === chosen }, id)));
    }
  }

  return render;
}
