// The dashboard: every section of the insights document (/api/stats, the JSON `mjvault stats
// --json` prints and `mjvault report` draws) as cards, filtered by dates, the search box's
// query and a time zone. One function a card; the charts are charts.js's.
import { getJSON, query } from "./api.js";
import { bars, calendar, heat, lines, monthName, stacked } from "./charts.js";

const $ = (id) => document.getElementById(id);
const count = (n) => (n ?? 0).toLocaleString("en");
const percent = (share) => (100 * (share || 0)).toLocaleString("en", { maximumFractionDigits: 1 }) + "%";
const TOP_TERMS = 15, TREND_TERMS = 8, SIGNATURE_MONTHS = 12, SIGNATURE_TERMS = 5;

function node(tag, content, className) {
  const el = document.createElement(tag);
  if (content !== undefined) el.textContent = content;
  if (className) el.className = className;
  return el;
}

// A card in the grid; `draw(width)` makes its content once the card's width is known, so
// a chart's text stays the page's size on a phone as on a wide screen.
function card(box, title, draw, wide) {
  const el = node("div", undefined, "card" + (wide ? " wide" : ""));
  el.appendChild(node("h3", title));
  box.appendChild(el);
  const style = getComputedStyle(el);
  const width = el.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight);
  for (const part of [draw(Math.max(240, Math.floor(width)))].flat()) if (part) el.appendChild(part);
  return el;
}

function table(headers, rows, numeric) {
  const el = node("table", undefined, "figures");
  const head = el.createTHead().insertRow();
  headers.forEach((h, n) => { const th = node("th", h); if (numeric?.[n]) th.className = "num"; head.appendChild(th); });
  const body = el.createTBody();
  for (const row of rows) {
    const tr = body.insertRow();
    row.forEach((value, n) => { const td = tr.insertCell(); td.textContent = String(value ?? ""); if (numeric?.[n]) td.className = "num"; });
  }
  return el;
}

function numbers(pairs) {
  const el = node("div", undefined, "totals");
  for (const [label, value] of pairs) {
    const item = node("span");
    item.append(node("b", value), label);
    el.appendChild(item);
  }
  return el;
}

const note = (text) => node("p", text, "note");

// The terms of every month's top list summed (as `mjvault stats` lists them).
function overallTerms(terms, top) {
  const sums = new Map();
  for (const month of terms?.top || []) for (const [term, n] of month.terms) sums.set(term, (sums.get(term) || 0) + n);
  return [...sums].sort((a, b) => b[1] - a[1] || (a[0] < b[0] ? -1 : 1)).slice(0, top);
}

// -- cards ----------------------------------------------------------------------------------
function archive(box, doc) {
  const t = doc.totals || {}, streaks = doc.activity?.streaks || {}, sessions = doc.activity?.sessions || {};
  card(box, "The archive", () => [
    numbers([["jobs", count(t.jobs)], ["images", count(t.images)], ["days active", count(t.days_active)]]),
    note(t.first ? `From ${t.first} to ${t.last}` + (t.undated ? `; ${count(t.undated)} without a date` : "") : "No dated job."),
  ]);
  const days = (n) => count(n) + (n === 1 ? " day" : " days");
  const jobs = (n) => { const t = n.toLocaleString("en", { maximumFractionDigits: 1 }); return t + (t === "1" ? " job" : " jobs"); };
  card(box, "Streaks and sessions", () => [
    numbers([["longest streak", days(streaks.longest?.days ?? 0)], ["current streak", days(streaks.current?.days ?? 0)], ["sessions", count(sessions.count)]]),
    note((streaks.longest?.days ? `Longest run: ${streaks.longest.start} to ${streaks.longest.end}. ` : "")
      + `A session: jobs less than ${sessions.gap_minutes ?? 30} minutes apart; `
      + `the mean one holds ${jobs(sessions.mean_jobs ?? 0)}, the longest ${jobs(sessions.longest_jobs ?? 0)}.`),
  ]);
}

function activity(box, doc) {
  const a = doc.activity || {}, zone = a.timezone ? ` (${a.timezone})` : "";
  if (!a.per_month?.length) return;
  card(box, "Jobs a month" + zone, (width) => bars(a.per_month.map((m) => ({ key: m.month, value: m.jobs })), { width, unit: "jobs" }));
  card(box, "Jobs a week" + zone, (width) => bars(a.per_week.map((w) => ({ key: w.week, value: w.jobs })), { width, unit: "jobs" }));
  card(box, "Days" + zone, (width) => [calendar(a.heatmap || [], { width }), levels()], true);
  card(box, "Hour and weekday" + zone, (width) => heat(a.hour_weekday, { width }));
}

function levels() {
  const el = node("div", undefined, "legend");
  el.append("fewer ");
  for (let n = 0; n <= 4; n++) el.appendChild(node("i", undefined, "day level" + n));
  el.append(" more jobs a day");
  return el;
}

function evolution(box, doc) {
  const e = doc.evolution || {};
  if (e.models?.length) {
    card(box, "Model versions (share of jobs)", (width) => stacked(e.models.map((m) => ({ key: m.month, values: m.share })), { width, share: true }));
  }
  const types = doc.types || {};
  if (types.per_month?.length) {
    card(box, "Job types", (width) => [
      stacked(types.per_month.map((m) => ({ key: m.month, values: m.jobs })), { width }),
      table(["type", "jobs", "images"], (types.total || []).map((t) => [t.type, count(t.jobs), count(t.images)]), [false, true, true]),
    ]);
  }
  if (e.params?.length) {
    card(box, "Parameters (share of the month's jobs)", (width) => lines(e.params.map((m) => ({ key: m.month, values: m.share })), { width, share: true }));
  }
  if (e.prompt_words?.length) {
    card(box, "Prompt length (mean words)", (width) => lines(e.prompt_words.map((m) => ({ key: m.month, values: { words: m.mean } })), { width, integer: false }));
  }
  const f = e.follow_ups;
  if (f?.per_month?.length) {
    card(box, "Grids and follow-ups", (width) => [
      lines(f.per_month.map((m) => ({ key: m.month, values: { grids: m.grids, "follow-ups": m.follow_ups } })), { width, legend: true }),
      note(`${count(f.grids_followed)} of ${count(f.grids)} grids followed up (upscaled, varied, panned…): ${percent(f.share)}.`),
    ]);
  }
}

function ratings(box, doc) {
  const r = doc.ratings;
  if (!r || !r.jobs_with_record_fields) return;
  card(box, "Likes and ranks", (width) => {
    const parts = [numbers([["liked", count(r.liked)], ["of the jobs", percent(r.liked_share)], ["ranked", count(Object.values(r.ranking || {}).reduce((a, b) => a + b, 0))]])];
    const ranks = Object.entries(r.ranking || {});
    if (ranks.some(([, n]) => n)) parts.push(bars(ranks.map(([rank, n]) => ({ key: rank, value: n })), { width, height: 120, unit: "jobs" }), note("Jobs by rank, 1 to 5."));
    if (r.per_month?.some((m) => m.liked || m.ranked)) parts.push(lines(r.per_month.map((m) => ({ key: m.month, values: { liked: m.liked, ranked: m.ranked } })), { width, legend: true }));
    parts.push(note(`From the ${count(r.jobs_with_record_fields)} jobs whose records carry likes or ranks`
      + (r.liked || ranks.some(([, n]) => n) ? "." : ": none liked or ranked yet.")));
    return parts;
  });
}

function terms(box, doc) {
  const t = doc.terms;
  if (!t) return;
  const g2 = t.threshold?.g2;
  card(box, "Top terms" + (t.anonymized ? " (anonymized)" : ""), () => {
    const top = overallTerms(t, TOP_TERMS);
    return top.length ? table(["term", "jobs"], top.map(([term, n]) => [term, count(n)]), [false, true]) : note("No term yet.");
  });
  const trend = [...(t.trends || [])].reverse().find((m) => m.rising.length || m.falling.length);
  card(box, "Rising and falling terms", () => {
    if (!trend) return note("No term rose or fell beyond chance from a month to the next.");
    const row = (x) => [x.term, count(x.previous), count(x.count)];
    return [
      note(`${monthName(trend.month)} against ${monthName(trend.previous)} (G² ≥ ${g2}, p < ${t.threshold.p}).`),
      trend.rising.length ? table(["rising", "before", "then"], trend.rising.slice(0, TREND_TERMS).map(row), [false, true, true]) : null,
      trend.falling.length ? table(["falling", "before", "then"], trend.falling.slice(0, TREND_TERMS).map(row), [false, true, true]) : null,
    ];
  });
  const signature = (t.signature || []).filter((m) => m.terms.length).slice(-SIGNATURE_MONTHS).reverse();
  card(box, "Signature terms", () => signature.length
    ? [note(`Each month's own words, against the whole archive (G² ≥ ${g2}).`),
      table(["month", "terms"], signature.map((m) => [monthName(m.month), m.terms.slice(0, SIGNATURE_TERMS).map((x) => x.term).join(", ")]))]
    : note("No month has words of its own beyond chance."));
}

function cost(box, doc) {
  const c = doc.cost;
  if (!c) return;
  const money = (v) => c.currency + " " + v.toLocaleString("en", { minimumFractionDigits: 2, maximumFractionDigits: 2 });
  card(box, "Cost (an estimate)", (width) => [
    numbers([["estimated total", money(c.total)], ["fast GPU hours", (c.fast_minutes / 60).toLocaleString("en", { maximumFractionDigits: 1 })]]),
    c.per_month?.length ? bars(c.per_month.map((m) => ({ key: m.month, value: m.cost })), { width, integer: false, format: money }) : null,
    note(`An estimate, not a bill: GPU minutes by the table below, fast minutes priced at ${money(c.price_per_fast_hour)} an hour.`),
    costTable(c.table || {}),
  ], true);
}

function costTable(tableOf) {
  const rows = [];
  const walk = (prefix, value) => {
    if (value && typeof value === "object") for (const [k, v] of Object.entries(value)) walk(prefix ? prefix + "." + k : k, v);
    else rows.push([prefix, value]);
  };
  walk("", tableOf);
  const details = node("details");
  details.append(node("summary", "The table used"), table(["entry", "value"], rows, [false, true]));
  return details;
}

// -- the page -------------------------------------------------------------------------------
let asked = null; // the filters of the document shown

function filters() {
  return { since: $("dash-since").value, until: $("dash-until").value, q: $("dash-q").value.trim(), tz: $("dash-tz").value.trim() };
}

async function draw(wanted) {
  const key = JSON.stringify(wanted);
  asked = key;
  $("dash-status").textContent = "Counting…";
  let doc;
  try {
    doc = await getJSON("/api/stats" + query(wanted));
  } catch (error) {
    if (asked === key) $("dash-status").textContent = error.message;
    if (error.code !== "bad_query" && error.code !== "bad_parameter") throw error;
    return;
  }
  if (asked !== key) return; // a newer ask is on its way
  const box = $("dashboard");
  box.replaceChildren();
  $("dash-status").textContent = doc.filter?.query || doc.filter?.since || doc.filter?.until
    ? `${count(doc.totals?.jobs)} matching jobs` : "";
  archive(box, doc);
  activity(box, doc);
  evolution(box, doc);
  ratings(box, doc);
  terms(box, doc);
  cost(box, doc);
}

let wired = false;
function wire() {
  if (wired) return;
  wired = true;
  const zones = $("dash-zones");
  try {
    for (const name of Intl.supportedValuesOf("timeZone")) zones.appendChild(new Option(name));
  } catch (e) { /* an old browser: the zone is typed */ }
  $("dash-tz").placeholder = "Time zone (the server's)";
  $("dash-tz").title = "An IANA zone; this browser's is " + Intl.DateTimeFormat().resolvedOptions().timeZone;
  $("dash-filters").addEventListener("submit", (event) => { event.preventDefault(); draw(filters()).catch(() => {}); });
  for (const id of ["dash-since", "dash-until", "dash-tz"]) $(id).addEventListener("change", () => draw(filters()).catch(() => {}));
  // Shown again after a search on the timeline: the search box's query is the filter.
  window.addEventListener("hashchange", () => {
    if (!location.hash.startsWith("#/dashboard") || $("dash-q").value === $("search").value) return;
    $("dash-q").value = $("search").value;
    draw(filters()).catch(() => {});
  });
}

// Draws the dashboard (again: after a sync, a change of theme) with the current filters.
export async function dashboard() {
  wire();
  if (asked === null) $("dash-q").value = $("search").value;
  await draw(filters());
}
