// Charts drawn as SVG: grouped bars and a line over time. No library: a few shapes
// and labels are all these need.

const NS = "http://www.w3.org/2000/svg";

function svg(tag, attributes = {}, text) {
  const node = document.createElementNS(NS, tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function legend(names) {
  const node = document.createElement("div");
  node.className = "legend";
  names.forEach((name, i) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.className = `s${i}`;
    item.append(swatch, name);
    node.append(item);
  });
  return node;
}

/**
 * Grouped bars: `categories` along x, one bar per series in each; negative values
 * hang below the zero line.
 */
export function barChart({ categories, series, format = String, width = 560, height = 240, testid }) {
  const pad = { left: 70, right: 10, top: 10, bottom: 40 };
  const values = series.flatMap((s) => s.values).filter((v) => Number.isFinite(v));
  const max = Math.max(0, ...values), min = Math.min(0, ...values);
  const span = max - min || 1;
  const plotH = height - pad.top - pad.bottom, plotW = width - pad.left - pad.right;
  const y = (v) => pad.top + ((max - v) / span) * plotH;
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (testid) root.dataset.testid = testid;
  root.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0) }));
  for (const v of [max, min].filter((v, i, all) => all.indexOf(v) === i)) {
    root.append(svg("text", { x: pad.left - 6, y: y(v) + 4, "text-anchor": "end" }, format(v)));
  }
  const group = plotW / Math.max(1, categories.length);
  const bar = (group * 0.8) / Math.max(1, series.length);
  categories.forEach((category, c) => {
    series.forEach((s, i) => {
      const v = Number.isFinite(s.values[c]) ? s.values[c] : 0;
      const x = pad.left + c * group + group * 0.1 + i * bar;
      const rect = svg("rect", {
        class: `s${i}`, x, width: Math.max(1, bar - 2),
        y: Math.min(y(v), y(0)), height: Math.max(1, Math.abs(y(v) - y(0))),
      });
      rect.append(svg("title", {}, `${category} · ${s.name}: ${format(v)}`));
      root.append(rect);
    });
    // Labels get the width of their group (about 6 px a character).
    const fits = Math.max(3, Math.floor(group / 6.5));
    const text = String(category);
    root.append(svg("text", { x: pad.left + c * group + group / 2, y: height - pad.bottom + 16, "text-anchor": "middle" },
      text.length > fits ? `${text.slice(0, fits - 1)}…` : text));
  });
  const box = document.createElement("div");
  box.append(root, legend(series.map((s) => s.name)));
  return box;
}

/** A line over time: `points` are `{ x: Date | ms, y }`, drawn in x order. */
export function lineChart({ points, format = String, width = 560, height = 220, label = "", testid }) {
  const pad = { left: 70, right: 14, top: 12, bottom: 34 };
  const data = points.map((p) => ({ x: +new Date(p.x), y: p.y })).filter((p) => Number.isFinite(p.y))
    .sort((a, b) => a.x - b.x);
  const root = svg("svg", { class: "chart", viewBox: `0 0 ${width} ${height}`, role: "img" });
  if (testid) root.dataset.testid = testid;
  if (data.length === 0) {
    root.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no data yet"));
    return root;
  }
  const xs = data.map((p) => p.x), ys = data.map((p) => p.y);
  const [x0, x1] = [Math.min(...xs), Math.max(...xs)];
  let [y0, y1] = [Math.min(...ys), Math.max(...ys)];
  if (y0 === y1) { y0 -= 1; y1 += 1; }
  const px = (x) => pad.left + (x1 === x0 ? 0.5 : (x - x0) / (x1 - x0)) * (width - pad.left - pad.right);
  const py = (v) => pad.top + ((y1 - v) / (y1 - y0)) * (height - pad.top - pad.bottom);
  root.append(svg("line", { class: "axis", x1: pad.left, x2: width - pad.right, y1: height - pad.bottom, y2: height - pad.bottom }));
  root.append(svg("line", { class: "axis", x1: pad.left, x2: pad.left, y1: pad.top, y2: height - pad.bottom }));
  root.append(svg("text", { x: pad.left - 6, y: py(y1) + 4, "text-anchor": "end" }, format(y1)));
  root.append(svg("text", { x: pad.left - 6, y: py(y0) + 4, "text-anchor": "end" }, format(y0)));
  const time = (x) => new Date(x).toLocaleTimeString();
  root.append(svg("text", { x: pad.left, y: height - 12 }, time(x0)));
  root.append(svg("text", { x: width - pad.right, y: height - 12, "text-anchor": "end" }, time(x1)));
  if (label) root.append(svg("text", { x: width / 2, y: height - 12, "text-anchor": "middle" }, label));
  const path = data.map((p, i) => `${i ? "L" : "M"}${px(p.x).toFixed(1)},${py(p.y).toFixed(1)}`).join(" ");
  root.append(svg("path", { class: "line", d: path }));
  if (data.length <= 60) {
    for (const p of data) {
      const dot = svg("circle", { cx: px(p.x), cy: py(p.y), r: 2.5, class: "s0" });
      dot.append(svg("title", {}, `${time(p.x)}: ${format(p.y)}`));
      root.append(dot);
    }
  }
  return root;
}
