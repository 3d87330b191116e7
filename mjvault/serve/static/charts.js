// Charts for the dashboard, drawn as SVG here (no library, nothing fetched): bars over
// months or days, a stacked share chart and an hour-by-weekday heat map. Colours come from
// the page's theme (currentColor and CSS variables), so both themes need nothing more.
const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function svg(width, height) {
  return el("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img" });
}

// Ticks at 1, 2 or 5 times a power of ten, whole numbers written out.
export function niceMax(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

function yAxis(root, max, left, top, height, width) {
  for (const f of [0, 0.5, 1]) {
    const y = top + height - f * height;
    el("line", { x1: left, x2: left + width, y1: y, y2: y, class: "axis" }, root);
    const text = el("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, root);
    text.textContent = (f * max).toLocaleString("en", { maximumFractionDigits: 2 });
  }
}

// Bars: [{label, value}], labels shown thinned to fit.
export function bars(points, options = {}) {
  const width = options.width || 520, height = options.height || 180;
  const left = 44, bottom = 22, top = 8, inner = width - left - 4, tall = height - top - bottom;
  const root = svg(width, height);
  const max = niceMax(Math.max(0, ...points.map((p) => p.value)));
  yAxis(root, max, left, top, tall, inner);
  const step = inner / Math.max(1, points.length), every = Math.max(1, Math.ceil(points.length / (inner / 48)));
  points.forEach((p, n) => {
    const h = (p.value / max) * tall;
    const bar = el("rect", { x: left + n * step + step * 0.1, y: top + tall - h, width: Math.max(1, step * 0.8), height: h, class: "bar" }, root);
    el("title", {}, bar).textContent = p.label + ": " + p.value.toLocaleString("en");
    if (n % every === 0) {
      const text = el("text", { x: left + n * step + step / 2, y: height - 6, "text-anchor": "middle" }, root);
      text.textContent = p.label;
    }
  });
  return root;
}

// Shares stacked to 100 %: rows [{label, share: {name: fraction}}].
export function stacked(rows, options = {}) {
  const width = options.width || 520, height = options.height || 180;
  const left = 44, bottom = 22, top = 8, inner = width - left - 4, tall = height - top - bottom;
  const totals = {};
  rows.forEach((r) => Object.entries(r.share || {}).forEach(([k, v]) => { totals[k] = (totals[k] || 0) + v; }));
  const names = Object.keys(totals).sort((a, b) => totals[b] - totals[a]).slice(0, PALETTE.length);
  const root = svg(width, height);
  for (const f of [0, 0.5, 1]) {
    const y = top + tall - f * tall;
    el("line", { x1: left, x2: left + inner, y1: y, y2: y, class: "axis" }, root);
    el("text", { x: left - 4, y: y + 3, "text-anchor": "end" }, root).textContent = Math.round(f * 100) + "%";
  }
  const step = inner / Math.max(1, rows.length), every = Math.max(1, Math.ceil(rows.length / (inner / 48)));
  rows.forEach((r, n) => {
    let y = top + tall;
    names.forEach((name, c) => {
      const h = (r.share[name] || 0) * tall;
      if (h <= 0) return;
      y -= h;
      const rect = el("rect", { x: left + n * step, y, width: Math.max(1, step - 1), height: h, fill: PALETTE[c] }, root);
      el("title", {}, rect).textContent = `${r.label} ${name}: ${Math.round((r.share[name] || 0) * 100)}%`;
    });
    if (n % every === 0) el("text", { x: left + n * step + step / 2, y: height - 6, "text-anchor": "middle" }, root).textContent = r.label;
  });
  const legend = document.createElement("div");
  legend.className = "legend";
  names.forEach((name, c) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = PALETTE[c];
    item.append(swatch, name);
    legend.appendChild(item);
  });
  const box = document.createElement("div");
  box.append(root, legend);
  return box;
}

// Jobs by hour (rows 0-23) and weekday (Monday first).
export function heat(hourWeekday, options = {}) {
  const cell = options.cell || 14, left = 28, top = 14;
  const width = left + 24 * cell + 2, height = top + 7 * cell + 2;
  const root = svg(width, height);
  root.style.maxWidth = width * 1.6 + "px"; // its labels the size of the other charts'
  const max = Math.max(1, ...hourWeekday.flat());
  ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"].forEach((day, d) => {
    el("text", { x: 0, y: top + d * cell + cell - 3 }, root).textContent = day;
  });
  for (let h = 0; h < 24; h += 6) el("text", { x: left + h * cell, y: 10 }, root).textContent = h + "h";
  hourWeekday.forEach((row, h) => row.forEach((n, d) => {
    const rect = el("rect", {
      x: left + h * cell, y: top + d * cell, width: cell - 2, height: cell - 2, rx: 2,
      fill: "var(--accent)", "fill-opacity": n ? 0.15 + 0.85 * (n / max) : 0.04,
    }, root);
    el("title", {}, rect).textContent = `${n} jobs`;
  }));
  return root;
}
