// mjvault serve: the page. Wires the timeline, search and facets, the lightbox, the
// selection and its batch operations, the other pages and the live events together.
import { ApiError, download, getJSON, postJSON, query, send, setCsrf } from "./api.js";
import { Timeline } from "./timeline.js";
import { Lightbox } from "./lightbox.js";
import { dashboard } from "./dashboard.js";
import { dupesPage } from "./dupes.js";

const $ = (id) => document.getElementById(id);
const plural = (n, word) => n.toLocaleString("en") + " " + word + (n === 1 ? "" : "s");
let info = { read_only: true };

// -- selection ------------------------------------------------------------------------------
// Ids picked one by one, or every result of the search but some ("select all" at a million
// jobs sends the query, not the ids).
const selection = { all: false, ids: new Set(), exclude: new Set(), anchor: -1 };
function isSelected(id) { return selection.all ? !selection.exclude.has(id) : selection.ids.has(id); }
function selectedCount() { return selection.all ? Math.max(0, timeline.total - selection.exclude.size) : selection.ids.size; }
function payload() {
  return selection.all ? { query: timeline.q, exclude: [...selection.exclude] } : { ids: [...selection.ids] };
}
function setSelected(id, on) {
  if (selection.all) { if (on) selection.exclude.delete(id); else selection.exclude.add(id); }
  else if (on) selection.ids.add(id); else selection.ids.delete(id);
}
function clearSelection() {
  selection.all = false;
  selection.ids.clear();
  selection.exclude.clear();
  selection.anchor = -1;
  selectionChanged();
}
function selectionChanged() {
  const n = selectedCount();
  $("selection").hidden = n === 0 && !selection.all;
  $("selected").textContent = plural(n, "job") + " selected";
  timeline.repaintSelection();
}
async function click(k, job, event) {
  if (!job) return;
  if (event.shiftKey && selection.anchor >= 0) {
    const from = Math.min(selection.anchor, k), to = Math.max(selection.anchor, k);
    (await timeline.jobs(from, to)).forEach((j) => setSelected(j.id, true));
    selectionChanged();
  } else if (event.ctrlKey || event.metaKey || selectedCount() > 0) {
    setSelected(job.id, !isSelected(job.id));
    selection.anchor = k;
    selectionChanged();
  } else {
    selection.anchor = k;
    lightbox.show(k);
  }
}

// -- the timeline, search, facets -----------------------------------------------------------
const timeline = new Timeline(
  { scroller: $("scroller"), window: $("window"), spacer: $("spacer"), scrubber: $("scrubber"), scrubLabel: $("scrub-label") },
  {
    click,
    selected: isSelected,
    counted(total) {
      $("count").textContent = plural(total, "job");
      $("empty").hidden = total > 0;
    },
  },
);
const lightbox = new Lightbox(timeline, {
  toggle(tile) { setSelected(tile.id, !isSelected(tile.id)); selectionChanged(); },
});

function search() {
  const q = $("search").value.trim(), sort = $("sort").value;
  clearSelection();
  const shown = timeline.reset(q, sort).catch(failed);
  facets(q);
  if (history.replaceState && currentPage() === "timeline") history.replaceState(null, "", "#/" + query({ q }));
  return shown;
}
let typing = 0;
$("search").addEventListener("input", () => { clearTimeout(typing); typing = setTimeout(search, 150); });
$("sort").addEventListener("change", search);
$("group").addEventListener("change", () => timeline.setGroup($("group").value));

const FACET_NAMES = { type: "Type", model: "Model", ar: "Aspect", month: "Month", liked: "Liked", rating: "Rating" };
let facetAsk = 0;
async function facets(q) {
  const asked = ++facetAsk;
  let answer;
  try { answer = await getJSON("/api/facets" + query({ q })); } catch (error) { failed(error); return; }
  if (asked !== facetAsk) return;
  const words = new Set(q.split(/\s+/).filter(Boolean));
  const box = $("facets");
  box.replaceChildren();
  for (const [name, values] of Object.entries(answer.facets || {})) {
    let list = values.filter((v) => v.term);
    if (name === "month") list = list.slice(-6).reverse();
    else list = list.slice(0, 8);
    if (!list.length) continue;
    const label = document.createElement("span");
    label.className = "facet-name";
    label.textContent = FACET_NAMES[name] || name;
    box.appendChild(label);
    for (const v of list) {
      const chip = document.createElement("button");
      chip.className = "chip" + (words.has(v.term) ? " on" : "");
      chip.dataset.term = v.term;
      chip.append(v.value === null ? "none" : String(v.value));
      const count = document.createElement("small");
      count.textContent = v.count.toLocaleString("en");
      chip.appendChild(count);
      box.appendChild(chip);
    }
  }
}
$("facets").addEventListener("click", (event) => {
  const chip = event.target.closest(".chip");
  if (!chip) return;
  // A chip adds its term to the query, or takes it out again.
  const term = chip.dataset.term, words = $("search").value.split(/\s+/).filter(Boolean);
  const at = words.indexOf(term);
  if (at >= 0) words.splice(at, 1); else words.push(term);
  $("search").value = words.join(" ");
  search();
});

// -- batch operations -----------------------------------------------------------------------
function ask(text, withInput) {
  const dialog = $("ask");
  $("ask-text").textContent = text;
  $("ask-input").hidden = !withInput;
  $("ask-input").value = "";
  dialog.returnValue = "";
  dialog.showModal();
  if (withInput) $("ask-input").focus();
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => {
      resolve(dialog.returnValue === "ok" ? (withInput ? $("ask-input").value.trim() : true) : null);
    }, { once: true });
  });
}
function note(text) {
  $("task").textContent = text;
}
function failed(error) {
  if (error && error.message === "stale") return;
  console.warn(error);
  note(error instanceof ApiError ? error.message : "The server did not answer");
}
$("select-all").addEventListener("click", () => {
  selection.all = true;
  selection.ids.clear();
  selection.exclude.clear();
  selectionChanged();
});
$("clear-selection").addEventListener("click", clearSelection);
for (const format of ["zip", "csv", "json"]) {
  $("export-" + format).addEventListener("click", async () => {
    note("Exporting " + plural(selectedCount(), "job") + "…");
    try {
      const name = await download("/api/export", { selection: payload(), format }, "mjvault-export." + format);
      note("Exported " + name);
    } catch (error) { failed(error); }
  });
}
$("add-collection").addEventListener("click", async () => {
  const name = await ask("Add " + plural(selectedCount(), "job") + " to the collection named:", true);
  if (!name) return;
  try {
    await postJSON("/api/collections/" + encodeURIComponent(name), { selection: payload(), op: "add" });
    note("Added to " + name);
  } catch (error) { failed(error); }
});
// "Make a view": the selection kept as a collection of that name and a checkout view over it
// (a folder of the images beside the vault, following the collection). The button is made
// here, beside "Add to collection…", so the bar's markup stays as it was.
const makeView = document.createElement("button");
makeView.id = "make-view";
makeView.className = "mutate";
makeView.textContent = "Make a view…";
makeView.title = "Keep the selection as a collection and a folder of its images";
$("add-collection").after(makeView);
makeView.addEventListener("click", async () => {
  const name = await ask("Make a view of " + plural(selectedCount(), "job") + " named (letters, digits, . _ -):", true);
  if (!name) return;
  const body = { name, selection: payload() };
  note("Making the view " + name + "…");
  try {
    let made;
    try {
      made = await postJSON("/api/views", body);
    } catch (error) {
      if (!(error instanceof ApiError && error.code === "exists" && error.body.replaceable)) throw error;
      const sure = await ask(error.message, false);  // "… exist already: replace it …?"
      if (!sure) { note(""); return; }
      made = await postJSON("/api/views", { ...body, replace: true });
    }
    note("View " + made.name + ": " + plural(made.files, "file") + " in " + made.directory);
  } catch (error) { failed(error); }
});
$("forget").addEventListener("click", async () => {
  const count = selectedCount();
  const sure = await ask("Forget " + plural(count, "job") + "? They leave the vault's current snapshot (older snapshots keep them).", false);
  if (!sure) return;
  try {
    const report = await postJSON("/api/forget", { selection: payload(), count });
    note("Forgot " + plural(report.jobs ?? report.forgotten ?? count, "job"));
    clearSelection();
    await timeline.reset(timeline.q, timeline.sort, true);
    facets(timeline.q);
  } catch (error) { failed(error); }
});

// -- pages ----------------------------------------------------------------------------------
function currentPage() {
  const name = (location.hash.match(/^#\/(\w+)/) || [])[1];
  return ["dashboard", "dupes", "snapshots", "remotes"].includes(name) ? name : "timeline";
}
let loaded = {};
function route() {
  const page = currentPage();
  document.querySelectorAll(".page").forEach((el) => { el.hidden = el.id !== page + "-page"; });
  document.querySelectorAll("#pages a").forEach((a) => a.classList.toggle("current", a.dataset.page === page));
  if (page === "timeline") timeline.relayout();
  if (!loaded[page]) {
    loaded[page] = true;
    ({ dashboard, dupes, snapshots, remotes })[page]?.().catch((error) => { loaded[page] = false; failed(error); });
  }
}
window.addEventListener("hashchange", route);

const dupes = dupesPage({
  open: (id) => lightbox.openId(id),
  select(ids) {
    ids.forEach((id) => setSelected(id, true));
    selectionChanged();
    note(plural(selectedCount(), "job") + " selected: act on them from the Timeline");
  },
  failed,
});

let snapshotsBefore = null;
async function snapshots(more) {
  const answer = await getJSON("/api/snapshots" + query({ limit: 50, before: more ? snapshotsBefore : null }));
  const body = $("snapshots").tBodies[0];
  if (!more) body.replaceChildren();
  for (const s of answer.snapshots || []) {
    const row = body.insertRow();
    const stats = s.stats || {};
    const jobs = stats.jobs ?? stats.job_count ?? "";
    [s.time.replace("T", " ").slice(0, 19), s.id.slice(0, 12) + (s.id === answer.head ? " (HEAD)" : ""), s.source, s.host, jobs]
      .forEach((text, n) => { const cell = row.insertCell(); cell.textContent = String(text ?? ""); if (n === 1) cell.className = "id"; });
    snapshotsBefore = s.id;
  }
  $("more-snapshots").hidden = !(answer.snapshots || []).length || answer.snapshots.length < 50;
}
$("more-snapshots").addEventListener("click", () => snapshots(true).catch(failed));

async function remotes() {
  const answer = await getJSON("/api/remotes");
  const body = $("remotes").tBodies[0];
  body.replaceChildren();
  const list = answer.remotes || [];
  $("no-remotes").hidden = list.length > 0;
  for (const r of list) {
    const row = body.insertRow();
    [r.name, r.url, r.last_push ? r.last_push.replace("T", " ").slice(0, 19) : "never", r.auto_push ? "yes" : "no"]
      .forEach((text) => { row.insertCell().textContent = text; });
    const push = document.createElement("button");
    push.textContent = "Push";
    push.className = "mutate";
    push.addEventListener("click", () => startTask("push", r.name));
    row.insertCell().appendChild(push);
  }
}

// -- live -----------------------------------------------------------------------------------
async function startTask(kind, remote) {
  try {
    await postJSON("/api/tasks", remote ? { kind, remote } : { kind });
  } catch (error) {
    if (error instanceof ApiError && error.code === "locked") lockShown(true, error.body.holder);
    else failed(error);
  }
}
$("sync").addEventListener("click", () => startTask("sync"));
$("push").addEventListener("click", () => startTask("push"));

function lockShown(held, holder) {
  $("banner").hidden = !held;
  $("banner").textContent = held ? "A sync is running elsewhere" + (holder ? " (" + holder + ")" : "") + ": this page follows it." : "";
  $("sync").disabled = held;
  $("push").disabled = held;
}
function taskShown(task) {
  const box = $("task");
  box.replaceChildren();
  const words = task.kind + (task.state === "running" ? "" : task.state === "done" ? " done" : " failed");
  box.append(words + (task.message ? ": " + task.message : ""));
  if (task.state === "running") {
    const bar = document.createElement("progress");
    if (task.total) { bar.max = task.total; bar.value = task.done || 0; }
    box.append(" ", bar);
    $("sync").disabled = $("push").disabled = true;
  } else {
    $("sync").disabled = $("push").disabled = !$("banner").hidden;
  }
}
// Resolves once the stream is open (or after 3 s without it), so whatever happens after the
// page says it is ready reaches it. At each (re)connection the latest task is read once: a
// task that ended while the stream was down still shows how it ended.
function listen() {
  if (!window.EventSource) return Promise.resolve();
  const events = new EventSource("/api/events");
  const opened = new Promise((resolve) => {
    events.addEventListener("open", resolve);
    setTimeout(resolve, 3000);
  });
  events.addEventListener("open", () => {
    getJSON("/api/tasks").then((answer) => {
      const latest = (answer.tasks || [])[0];
      if (latest && $("task").textContent === "") taskShown(latest);
    }, () => {});
  });
  events.addEventListener("task", (event) => taskShown(JSON.parse(event.data)));
  // The server's own holds (a push or a change from this page) are not "elsewhere".
  events.addEventListener("lock", (event) => { const d = JSON.parse(event.data); lockShown(d.held && !d.ours, d.holder); });
  events.addEventListener("jobs", () => {
    // New jobs: they are the newest, prepended without a reload; the tiles on screen stay.
    timeline.reset(timeline.q, timeline.sort, true).catch(failed);
    facets(timeline.q);
    loaded = { [currentPage()]: true };
  });
  return opened;
}

// -- theme, keys ----------------------------------------------------------------------------
function toggleTheme() {
  const root = document.documentElement;
  const dark = root.dataset.theme ? root.dataset.theme === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  root.dataset.theme = dark ? "light" : "dark";
  try { localStorage.setItem("mjvault-theme", root.dataset.theme); } catch (e) { /* private mode */ }
  if (loaded.dashboard && currentPage() === "dashboard") dashboard().catch(failed);
}
$("theme").addEventListener("click", toggleTheme);
const help = (show) => { $("help").hidden = !show; };
$("help-button").addEventListener("click", () => help(true));
$("help-close").addEventListener("click", () => help(false));
$("help").addEventListener("click", (event) => { if (event.target === $("help")) help(false); });

document.addEventListener("keydown", (event) => {
  if ($("ask").open || event.ctrlKey || event.metaKey || event.altKey) return;
  if (!$("help").hidden) { if (event.key === "Escape" || event.key === "?") { help(false); event.preventDefault(); } return; }
  if (event.key === "?") { help(true); event.preventDefault(); return; }
  if (lightbox.open) { if (lightbox.key(event)) event.preventDefault(); return; }
  const typing = event.target.matches("input, select, textarea");
  if (typing) { if (event.key === "Escape") event.target.blur(); return; }
  if (event.key === "/") { $("search").focus(); event.preventDefault(); }
  else if (event.key === "Escape") clearSelection();
  else if (event.key === "t") toggleTheme();
  else if (event.key === "Home" && currentPage() === "timeline") { timeline.scrollToIndex(0); event.preventDefault(); }
  else if (event.key === "End" && currentPage() === "timeline") { timeline.scrollToIndex(timeline.total - 1); event.preventDefault(); }
});

// -- start ----------------------------------------------------------------------------------
async function start() {
  try {
    info = await getJSON("/api/info");
  } catch (error) { failed(error); }
  setCsrf(info.csrf);
  document.body.classList.toggle("read-only", !!info.read_only);
  document.title = "mjvault" + (info.jobs !== undefined ? " · " + plural(info.jobs, "job") : "");
  const q = new URLSearchParams((location.hash.split("?")[1] || "")).get("q");
  if (q) $("search").value = q;
  route();
  await search();
  await listen();
  document.body.dataset.ready = "1";
}
start();
window.mjvault = { timeline, lightbox, selection };
