// Charts for the dashboard, drawn as SVG here (no library, nothing fetched): bars, stacked
// bars and lines over months, weeks or days, a calendar of days (GitHub's) and an
// hour-by-weekday heat map. Colours come from the page's theme (CSS variables) or PALETTE,
// which reads on both themes. Axes count in whole numbers unless told a value is money, a
// share or a mean; time axes are marked where a month or a year begins.
const NS = "http://www.w3.org/2000/svg";
export const PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac"];
const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
const WEEKDAYS = ["Mo", "Tu", "We", "Th", "Fr", "Sa", "Su"];
const LEFT = 44, TOP = 8, BOTTOM = 30; // px of a plot's margins (labels)

function el(name, attrs, parent) {
  const node = document.createElementNS(NS, name);
  for (const [key, value] of Object.entries(attrs || {})) node.setAttribute(key, value);
  if (parent) parent.appendChild(node);
  return node;
}

function text(parent, x, y, content, anchor) {
  const node = el("text", { x, y, "text-anchor": anchor || "start" }, parent);
  node.textContent = content;
  return node;
}

function svg(width, height) {
  return el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart", role: "img" });
}

// -- dates ----------------------------------------------------------------------------------
// The insights document's periods as UTC dates: "2024-03", "2024-W05" (its Monday), "2024-03-07".
export function periodDate(key) {
  const week = /^(\d{4})-W(\d{2})$/.exec(key);
  if (week) {
    const jan4 = Date.UTC(+week[1], 0, 4);
    const monday = jan4 - ((new Date(jan4).getUTCDay() + 6) % 7) * 86400000;
    return new Date(monday + (+week[2] - 1) * 7 * 86400000);
  }
  const [y, m, d] = key.split("-").map(Number);
  return new Date(Date.UTC(y, (m || 1) - 1, d || 1));
}

export function monthName(key) {
  const date = periodDate(key);
  return MONTHS[date.getUTCMonth()] + " " + date.getUTCFullYear();
}

// Where the x axis of evenly spaced periods is marked: at each new year when the span is long
// for its width, else at each new month (its year written at January and at the first mark).
export function timeTicks(keys, width) {
  const dates = keys.map(periodDate);
  const room = Math.max(1, Math.floor(width / 44));
  const months = new Set(dates.map((d) => d.getUTCFullYear() * 12 + d.getUTCMonth())).size;
  const byYear = months > room;
  const ticks = [];
  let previous = null;
  dates.forEach((d, n) => {
    const mark = byYear ? d.getUTCFullYear() : d.getUTCFullYear() * 12 + d.getUTCMonth();
    if (mark === previous) return;
    const first = previous === null;
    previous = mark;
    if (byYear) ticks.push({ n, label: String(d.getUTCFullYear()) });
    else ticks.push({ n, label: MONTHS[d.getUTCMonth()], year: first || d.getUTCMonth() === 0 ? String(d.getUTCFullYear()) : "" });
  });
  // Thinned evenly when months still crowd (a mark every 2, 3, 6 months).
  const every = [1, 2, 3, 6, 12].find((k) => ticks.length / k <= room) || Math.ceil(ticks.length / room);
  return ticks.filter((t, i) => i % every === 0 || (t.year && every < 12));
}

// -- axes -----------------------------------------------------------------------------------
// Ticks at 1, 2 or 5 times a power of ten.
export function niceMax(value) {
  if (value <= 0) return 1;
  const power = Math.pow(10, Math.floor(Math.log10(value)));
  for (const step of [1, 2, 5, 10]) if (step * power >= value) return step * power;
  return 10 * power;
}

// The values a y axis is marked at: whole numbers for counts (never "0.5 jobs").
export function yTicks(max, integer) {
  const top = integer ? Math.max(1, niceMax(Math.ceil(max))) : niceMax(max);
  const half = top / 2;
  return { top, marks: integer && !Number.isInteger(half) ? [0, top] : [0, half, top] };
}

const number = (v, format) => format ? format(v) : v.toLocaleString("en", { maximumFractionDigits: 2 });

function plot(options, count) {
  const width = options.width || 520, height = options.height || 180;
  const inner = width - LEFT - 6, tall = height - TOP - BOTTOM;
  return { width, height, inner, tall, step: inner / Math.max(1, count) };
}

function yAxis(root, box, ticks, format) {
  for (const v of ticks.marks) {
    const y = TOP + box.tall - (v / ticks.top) * box.tall;
    el("line", { x1: LEFT, x2: LEFT + box.inner, y1: y, y2: y, class: "axis" }, root);
    text(root, LEFT - 4, y + 3, number(v, format), "end");
  }
}

function xAxis(root, box, keys) {
  if (!keys) return;
  for (const t of timeTicks(keys, box.inner)) {
    const x = LEFT + t.n * box.step;
    el("line", { x1: x, x2: x, y1: TOP + box.tall, y2: TOP + box.tall + 4, class: "axis" }, root);
    text(root, x, box.height - 17, t.label);
    if (t.year) text(root, x, box.height - 5, t.year);
  }
}

function titled(node, content) {
  el("title", {}, node).textContent = content;
  return node;
}

// -- charts ---------------------------------------------------------------------------------
// Bars over periods: points [{key, value}] (key a period: month, ISO week or day). Options:
// width, height, integer (counts: whole ticks), format (a value's text), unit (in titles).
export function bars(points, options = {}) {
  const box = plot(options, points.length);
  const root = svg(box.width, box.height);
  const ticks = yTicks(Math.max(0, ...points.map((p) => p.value)), options.integer !== false);
  yAxis(root, box, ticks, options.format);
  points.forEach((p, n) => {
    const h = (p.value / ticks.top) * box.tall;
    const bar = el("rect", { x: LEFT + n * box.step + box.step * 0.1, y: TOP + box.tall - h, width: Math.max(0.5, box.step * 0.8), height: h, class: "bar" }, root);
    titled(bar, `${p.key}: ${number(p.value, options.format)}${options.unit ? " " + options.unit : ""}`);
  });
  xAxis(root, box, points.map((p) => p.key));
  return root;
}

// The names drawn in colour: the largest first, the rest summed as "other".
function ranked(rows, limit) {
  const totals = {};
  rows.forEach((r) => Object.entries(r.values || {}).forEach(([k, v]) => { totals[k] = (totals[k] || 0) + v; }));
  const names = Object.keys(totals).sort((a, b) => totals[b] - totals[a] || (a < b ? -1 : 1));
  return names.length > limit ? [names.slice(0, limit - 1), true] : [names, false];
}

// Stacked bars over periods: rows [{key, values: {name: number}}]. Options as bars, and
// share (values are fractions: drawn to 100 %), limit (colours before "other").
export function stacked(rows, options = {}) {
  const [names, other] = ranked(rows, options.limit || PALETTE.length);
  const shown = other ? [...names, "other"] : names;
  const parts = rows.map((r) => {
    const values = names.map((name) => r.values?.[name] || 0);
    const sum = Object.values(r.values || {}).reduce((a, b) => a + b, 0);
    if (other) values.push(Math.max(0, sum - values.reduce((a, b) => a + b, 0)));
    return values;
  });
  const box = plot(options, rows.length);
  const root = svg(box.width, box.height);
  const ticks = options.share ? { top: 1, marks: [0, 0.5, 1] } : yTicks(Math.max(0, ...parts.map((v) => v.reduce((a, b) => a + b, 0))), true);
  const format = options.share ? (v) => Math.round(v * 100) + "%" : options.format;
  yAxis(root, box, ticks, format);
  rows.forEach((r, n) => {
    let y = TOP + box.tall;
    parts[n].forEach((v, c) => {
      const h = (v / ticks.top) * box.tall;
      if (h <= 0) return;
      y -= h;
      const rect = el("rect", { x: LEFT + n * box.step, y, width: Math.max(0.5, box.step - (box.step > 3 ? 1 : 0)), height: h, fill: PALETTE[c] }, root);
      titled(rect, `${r.key} ${shown[c]}: ${number(v, format)}`);
    });
  });
  xAxis(root, box, rows.map((r) => r.key));
  return withLegend(root, shown);
}

// Lines over periods: rows [{key, values: {name: number}}], one line a name (the largest
// `limit`). Options as stacked (share: a fraction axis to 100 %).
export function lines(rows, options = {}) {
  const [names] = ranked(rows, options.limit || 6);
  const box = plot(options, rows.length);
  const root = svg(box.width, box.height);
  const max = Math.max(0, ...rows.flatMap((r) => names.map((name) => r.values?.[name] || 0)));
  const ticks = options.share ? yTicks(max, false) : yTicks(max, options.integer !== false);
  const format = options.share ? (v) => Math.round(v * 100) + "%" : options.format;
  yAxis(root, box, ticks, format);
  names.forEach((name, c) => {
    const points = rows.map((r, n) => {
      const v = r.values?.[name] || 0;
      return `${(LEFT + (n + 0.5) * box.step).toFixed(1)},${(TOP + box.tall - (v / ticks.top) * box.tall).toFixed(1)}`;
    });
    const line = el(rows.length > 1 ? "polyline" : "circle", rows.length > 1
      ? { points: points.join(" "), fill: "none", stroke: PALETTE[c], "stroke-width": 1.6 }
      : { cx: points[0].split(",")[0], cy: points[0].split(",")[1], r: 3, fill: PALETTE[c] }, root);
    titled(line, name);
  });
  xAxis(root, box, rows.map((r) => r.key));
  return names.length > 1 || options.legend ? withLegend(root, names) : root;
}

export function legend(names) {
  const box = document.createElement("div");
  box.className = "legend";
  names.forEach((name, c) => {
    const item = document.createElement("span");
    const swatch = document.createElement("i");
    swatch.style.background = PALETTE[c % PALETTE.length];
    item.append(swatch, name);
    box.appendChild(item);
  });
  return box;
}

function withLegend(root, names) {
  const box = document.createElement("div");
  box.append(root, legend(names));
  return box;
}

// Days as GitHub draws them: a column a week, Monday on top, a row of weeks a year; the
// shade is the day's level (0: no job, 1-4: quartiles of active days). heatmap: the
// document's [{day, weekday, jobs, level}].
export function calendar(heatmap, options = {}) {
  const years = new Map();
  for (const d of heatmap) {
    const year = +d.day.slice(0, 4);
    if (!years.has(year)) years.set(year, []);
    years.get(year).push(d);
  }
  // A year's name, then the weekdays (when a cell is tall enough for them), left of its weeks.
  const width = options.width || 520;
  const cell = Math.max(3, Math.min(16, Math.floor((width - 54) / 54)));
  const left = cell >= 9 ? 54 : 32, label = 12;
  const band = label + 7 * cell + 6;
  const root = svg(width, Math.max(1, years.size) * band);
  [...years.keys()].forEach((year, row) => {
    const top = row * band + label;
    text(root, 0, top + 3 * cell + cell - 2, String(year));
    if (cell >= 9) [0, 2, 4].forEach((d) => text(root, left - 4, top + d * cell + cell - 2, WEEKDAYS[d], "end"));
    const jan1 = Date.UTC(year, 0, 1), offset = (new Date(jan1).getUTCDay() + 6) % 7;
    for (const m of [0, 2, 4, 6, 8, 10]) {
      const week = Math.floor(((Date.UTC(year, m, 1) - jan1) / 86400000 + offset) / 7);
      text(root, left + week * cell, top - 3, MONTHS[m]);
    }
    for (const d of years.get(year)) {
      const n = (periodDate(d.day) - jan1) / 86400000;
      const rect = el("rect", {
        x: left + Math.floor((n + offset) / 7) * cell, y: top + d.weekday * cell,
        width: cell - 1, height: cell - 1, rx: 1.5, class: "day level" + d.level,
      }, root);
      titled(rect, `${d.day}: ${d.jobs.toLocaleString("en")} job${d.jobs === 1 ? "" : "s"}`);
    }
  });
  return root;
}

// Jobs by hour (rows 0-23) and weekday (Monday first): a column an hour.
export function heat(hourWeekday, options = {}) {
  const width = options.width || 520, left = 28, top = 14;
  const cell = Math.max(8, Math.min(20, Math.floor((width - left - 2) / 24)));
  const root = svg(left + 24 * cell + 2, top + 7 * cell + 2);
  root.style.maxWidth = left + 24 * cell + 2 + "px"; // its cells square, its text the others' size
  const max = Math.max(1, ...hourWeekday.flat());
  WEEKDAYS.forEach((day, d) => text(root, 0, top + d * cell + cell - 3, day));
  for (let h = 0; h < 24; h += 3) text(root, left + h * cell, 10, h + "h");
  hourWeekday.forEach((row, h) => row.forEach((n, d) => {
    const rect = el("rect", {
      x: left + h * cell, y: top + d * cell, width: cell - 2, height: cell - 2, rx: 2,
      fill: "var(--accent)", "fill-opacity": n ? 0.15 + 0.85 * (n / max) : 0.04,
    }, root);
    titled(rect, `${WEEKDAYS[d]} ${h}:00–${h + 1}:00: ${n.toLocaleString("en")} job${n === 1 ? "" : "s"}`);
  }));
  return root;
}
