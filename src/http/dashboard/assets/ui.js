// Small DOM helpers: elements, tables of rows, number and time formats. Values are
// always set as text, never parsed as HTML.

/** `el("td", { class: "num" }, "12")`: an element with attributes and children. */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const money = new Intl.NumberFormat(undefined, { minimumFractionDigits: 2, maximumFractionDigits: 2 });
const count = new Intl.NumberFormat(undefined, { maximumFractionDigits: 0 });
const ratio = new Intl.NumberFormat(undefined, { maximumFractionDigits: 3 });

export const fmt = {
  money: (v) => (v === null || v === undefined ? "—" : money.format(v)),
  count: (v) => (v === null || v === undefined ? "—" : count.format(v)),
  ratio: (v) => (v === null || v === undefined ? "—" : ratio.format(v)),
  percent: (v) => (v === null || v === undefined ? "—" : `${ratio.format(v * 100)} %`),
  time: (v) => (v ? new Date(v).toLocaleString() : "—"),
  clock: (v) => (v ? new Date(v).toLocaleTimeString() : "—"),
  text: (v) => (v === null || v === undefined ? "—" : String(v)),
  badge: (v) => el("span", { class: `badge ${v}` }, v ?? "—"),
};

/**
 * A table of `rows` (objects by column name). `columns` are
 * `{ key, label, format?, num? , cell?(row) }`; `keyOf(row)` names a row so that rows whose
 * values changed since the last render flash.
 */
export function table(columns, rows, { keyOf, previous, testid } = {}) {
  const head = el("tr", {}, columns.map((c) => el("th", { class: c.num ? "num" : null }, c.label)));
  const body = rows.map((row) => {
    const tr = el("tr", {}, columns.map((c) => {
      const value = c.cell ? c.cell(row) : (c.format || fmt.text)(row[c.key]);
      return el("td", { class: c.num ? "num" : null }, value);
    }));
    if (keyOf) {
      const key = keyOf(row);
      tr.dataset.key = key;
      const signature = JSON.stringify(row);
      if (previous && previous.has(key) && previous.get(key) !== signature) tr.classList.add("flash");
    }
    return tr;
  });
  const node = el("table", { "data-testid": testid }, el("thead", {}, head), el("tbody", {}, body));
  if (keyOf) {
    node.signatures = new Map(rows.map((row) => [keyOf(row), JSON.stringify(row)]));
  }
  return node;
}

/** Replaces a container's content. */
export function fill(container, ...children) {
  container.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/** Stat cards: `[label, value, testid?]`. */
export function cards(items) {
  return el("div", { class: "cards" }, items.map(([label, value, testid]) =>
    el("div", { class: "card" }, el("div", { class: "label" }, label),
      el("div", { class: "value", "data-testid": testid }, value))));
}

/** The newest row per key, by `order` (ISO timestamps compare as text). */
export function latestBy(rows, key, order) {
  const latest = new Map();
  for (const row of rows) {
    const k = row[key];
    const seen = latest.get(k);
    if (!seen || (row[order] ?? "") > (seen[order] ?? "")) latest.set(k, row);
  }
  return [...latest.values()];
}

export function sortBy(rows, key, descending = false) {
  const sign = descending ? -1 : 1;
  return [...rows].sort((a, b) => {
    const x = a[key], y = b[key];
    if (x === y) return 0;
    if (x === null || x === undefined) return 1;
    if (y === null || y === undefined) return -1;
    return x < y ? -sign : sign;
  });
}

/** Rows as CSV text (RFC 4180 quoting). */
export function csv(columns, rows) {
  const quote = (v) => {
    const text = v === null || v === undefined ? "" : String(v);
    return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
  };
  return [columns.map(quote).join(","), ...rows.map((row) => columns.map((c) => quote(row[c])).join(","))]
    .join("\r\n") + "\r\n";
}

/** Offers `text` as a file download. */
export function download(name, type, text) {
  const url = URL.createObjectURL(new Blob([text], { type }));
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 1000);
}
