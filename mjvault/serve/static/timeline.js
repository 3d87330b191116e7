// The timeline: a grid of a million jobs in a browser.
//
// Rows have one height, so a scroll position maps to a job's index by arithmetic: no layout
// of the jobs above it is needed (Immich#28861's 18 s stall came from laying out a 70k-job
// month before showing it). The jobs come in segments of `segment_size` (from /api/timeline,
// by count, not by month: Immich#4180), each fetched through its keyset cursor only when its
// rows near the viewport; a few dozen stay cached. Browsers stop laying out an element near
// 2^24 px (Immich#16788 left 72 % of an 888k library out of reach), so the scrolled height
// is clamped under that and the scroll position is scaled onto the rows by a factor: the
// top of the scrollbar is the first row, its bottom the last. Tiles are made at most
// PER_FRAME a frame (requestAnimationFrame), so no scroll or jump is one long task.
import { getJSON, query } from "./api.js";

export const MAX_HEIGHT = 15_000_000; // px, under Chromium's and Firefox's 2^24 (16.7M)
const GAP = 6, PAD = 8; // px between tiles and around the grid
const AHEAD = 1; // screens of rows made above and below the viewport
const KEEP = 48; // segments kept, least recently used dropped first
const LOADS = 3; // segments loading at once
const PER_FRAME = 120; // tiles made per animation frame
const SEGMENT = 500; // jobs a segment (the server's timeline cuts the same)

export class Timeline {
  constructor(elements, hooks) {
    this.scroller = elements.scroller;
    this.win = elements.window;
    this.spacer = elements.spacer;
    this.scrubber = elements.scrubber;
    this.scrubLabel = elements.scrubLabel;
    this.hooks = hooks; // {open(k), click(k, job, event), selected(id), counted(total)}
    this.maxHeight = window.MJVAULT_MAX_HEIGHT || MAX_HEIGHT; // a test may lower it
    this.keep = KEEP;
    this.q = "";
    this.sort = "newest";
    this.group = "";
    this.total = 0;
    this.size = 500;
    this.segments = [];
    this.awaiting = null; // the timeline asked by the last reset, until it arrives
    this.cache = new Map(); // segment -> {jobs, next}
    this.pending = new Map(); // segment -> Promise
    this.wanted = [];
    this.loading = 0;
    this.shown = new Map(); // index -> element
    this.queue = []; // indexes to make, nearest the viewport first
    this.fresh = new Set(); // ids arrived by a live sync, shown with a mark once
    this.generation = 0;
    this.columns = 1;
    this.tile = 0;
    this.pitch = 1;
    this.natural = 0;
    this.height = 0;
    this.frame = 0;
    this.scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    if ("ResizeObserver" in window) new ResizeObserver(() => this.relayout()).observe(this.scroller);
    else window.addEventListener("resize", () => this.relayout());
    this.win.addEventListener("click", (event) => {
      const el = event.target.closest(".tile");
      if (!el) return;
      const k = Number(el.dataset.k);
      this.hooks.click(k, this.jobAt(k), event);
    });
    this.setupScrubber();
  }

  // -- data -----------------------------------------------------------------------------
  async reset(q, sort, keepTop) {
    const g = ++this.generation;
    const top = keepTop ? this.topIndex() : 0;
    const before = this.total;
    // The first screen comes from the first page alone: the timeline (the segments' cursors
    // and dates, a second or two on its first ask at a million jobs) is asked at the same
    // time and filled in when it comes; a segment wanted before then waits for its cursor.
    let timeline = null, arrived = null;
    if (sort !== "relevance") {
      timeline = getJSON("/api/timeline" + query({ q, sort }));
      timeline.then((t) => { arrived = t; }, () => {});
    }
    const first = await getJSON("/api/jobs" + query({ q, sort, limit: SEGMENT }));
    if (g !== this.generation) return;
    // Relevance order has no timeline: later cursors are read from each segment's `next`
    // as the segments are loaded in order.
    const info = arrived || { total: first.total, segment_size: SEGMENT, segments: [] };
    if (!arrived) {
      for (let n = 0; n * SEGMENT < first.total; n++) {
        info.segments.push({ cursor: n ? undefined : null, count: Math.min(SEGMENT, first.total - n * SEGMENT), first: null, last: null });
      }
    }
    this.q = q;
    this.sort = sort;
    this.total = info.total;
    this.size = info.segment_size || SEGMENT;
    this.segments = info.segments || [];
    this.cache.clear();
    this.pending.clear();
    this.wanted = [];
    if (this.size === SEGMENT) this.cache.set(0, { jobs: first.jobs, next: first.next });
    this.awaiting = arrived || !timeline ? null : timeline.then((t) => this.timelineArrived(g, t), () => {});
    this.clearTiles();
    this.measure();
    this.resize();
    this.marks();
    let k = 0;
    if (keepTop && sort === "newest") {
      k = top + Math.max(0, this.total - before);
    } else if (keepTop) {
      k = top;
    }
    if (k > 0) this.scrollToIndex(k);
    else this.scroller.scrollTop = 0;
    this.hooks.counted(this.total);
    this.schedule();
  }

  // The timeline of a reset arrived after its first screen: the segments' cursors and dates.
  timelineArrived(g, info) {
    if (g !== this.generation) return;
    this.awaiting = null;
    if ((info.segment_size || SEGMENT) !== this.size || info.total !== this.total) {
      this.reset(this.q, this.sort, true).catch(() => {}); // the index changed meanwhile
      return;
    }
    this.segments = info.segments || [];
    this.marks();
  }

  segmentOf(k) { return Math.floor(k / this.size); }

  jobAt(k) {
    const entry = this.cache.get(this.segmentOf(k));
    if (!entry) return null;
    this.cache.delete(this.segmentOf(k)); // least recently used order
    this.cache.set(this.segmentOf(k), entry);
    return entry.jobs[k % this.size] || null;
  }

  // The job at index k, loading its segment when needed (the lightbox, a range selection).
  async job(k) {
    if (k < 0 || k >= this.total) return null;
    const have = this.jobAt(k);
    if (have) return have;
    await this.load(this.segmentOf(k));
    return this.jobAt(k);
  }

  // Each segment's jobs are taken as it arrives: over more than KEEP segments, reading them
  // after all had loaded found the first ones already dropped.
  async jobs(from, to) {
    const out = [];
    for (let s = this.segmentOf(from); s <= this.segmentOf(to); s++) {
      const entry = await this.load(s);
      const base = s * this.size;
      const end = Math.min(to, base + this.size - 1);
      for (let k = Math.max(from, base); k <= end; k++) {
        const job = entry.jobs[k - base];
        if (job) out.push(job);
      }
    }
    return out;
  }

  load(s) {
    if (this.cache.has(s)) return Promise.resolve(this.cache.get(s));
    if (this.pending.has(s)) return this.pending.get(s);
    const g = this.generation;
    const promise = (async () => {
      let cursor = this.segments[s] ? this.segments[s].cursor : null;
      if (cursor === undefined && this.awaiting) {
        await this.awaiting; // the timeline on its way has every segment's cursor
        if (g !== this.generation) throw new Error("stale");
        cursor = this.segments[s] ? this.segments[s].cursor : null;
      }
      if (cursor === undefined) {
        // Relevance order: the cursor is the previous segment's `next`.
        const previous = await this.load(s - 1);
        cursor = previous.next;
      }
      const page = await getJSON("/api/jobs" + query({ q: this.q, sort: this.sort, after: cursor, limit: this.size }));
      if (g !== this.generation) throw new Error("stale");
      const entry = { jobs: page.jobs, next: page.next };
      this.cache.set(s, entry);
      while (this.cache.size > this.keep) this.cache.delete(this.cache.keys().next().value);
      return entry;
    })();
    this.pending.set(s, promise);
    promise.finally(() => { if (this.pending.get(s) === promise) this.pending.delete(s); }).catch(() => {});
    return promise;
  }

  // Segments are asked for a few at a time, and only while their rows are still near the
  // viewport: a scrubber dragged across the archive loads where it stops, not all it passed.
  fetchWanted() {
    while (this.loading < LOADS && this.wanted.length) {
      const s = this.wanted.shift();
      if (this.cache.has(s) || this.pending.has(s)) continue;
      this.loading++;
      this.load(s).then(
        () => { this.loading--; this.refill(s); this.fetchWanted(); },
        () => { this.loading--; this.fetchWanted(); },
      );
    }
  }

  // -- geometry -------------------------------------------------------------------------
  measure() {
    const css = parseFloat(getComputedStyle(document.documentElement).getPropertyValue("--tile-size")) || 180;
    const width = this.scroller.clientWidth - 2 * PAD;
    this.columns = Math.max(1, Math.floor((width + GAP) / (css + GAP)));
    this.tile = (width - GAP * (this.columns - 1)) / this.columns;
    this.pitch = this.tile + GAP;
  }

  resize() {
    const rows = Math.ceil(this.total / this.columns);
    this.natural = rows ? 2 * PAD + rows * this.pitch - GAP : 0;
    const view = this.scroller.clientHeight;
    this.height = Math.max(view, Math.min(this.natural, this.maxHeight));
    this.win.style.height = view + "px";
    this.spacer.style.height = Math.max(0, this.height - view) + "px";
  }

  // Scroll position <-> position in the rows: the scrollable range of the clamped height
  // spread over the rows' (factor 1 below the clamp).
  factor() {
    const view = this.scroller.clientHeight, room = this.height - view;
    if (this.natural <= this.height || room <= 0) return 1;
    return (this.natural - view) / room;
  }
  contentTop() { return this.scroller.scrollTop * this.factor(); }
  topIndex() {
    return Math.min(Math.max(0, this.total - 1), Math.max(0, Math.floor((this.contentTop() - PAD + GAP) / this.pitch)) * this.columns);
  }

  scrollToIndex(k) {
    const row = Math.floor(Math.max(0, Math.min(k, this.total - 1)) / this.columns);
    this.scroller.scrollTop = Math.ceil(row * this.pitch / this.factor());
    this.schedule();
  }

  // Bring index k on screen if it is not (the lightbox walked past the viewport).
  scrollIntoView(k) {
    const row = Math.floor(k / this.columns), v = this.contentTop(), view = this.scroller.clientHeight;
    const y = PAD + row * this.pitch;
    if (y < v || y + this.pitch > v + view) this.scrollToIndex(k);
  }

  relayout() {
    const top = this.topIndex(), was = this.tile, view = this.win.style.height, height = this.height;
    this.measure();
    if (this.tile === was && view === this.scroller.clientHeight + "px" && height === Math.max(this.scroller.clientHeight, Math.min(this.natural, this.maxHeight))) return;
    this.resize();
    this.clearTiles();
    this.marks();
    if (top > 0) this.scrollToIndex(top);
    this.schedule();
  }

  // -- tiles ----------------------------------------------------------------------------
  clearTiles() {
    this.shown.forEach((el) => el.remove());
    this.shown.clear();
    this.queue = [];
  }

  schedule() {
    if (!this.frame) this.frame = requestAnimationFrame(() => { this.frame = 0; this.render(); });
  }

  place(el, k, v) {
    const x = PAD + (k % this.columns) * this.pitch, y = PAD + Math.floor(k / this.columns) * this.pitch - v;
    el.style.transform = `translate(${x}px,${y}px)`;
  }

  render() {
    const v = this.contentTop(), view = this.scroller.clientHeight;
    const r0 = Math.max(0, Math.floor((v - PAD - AHEAD * view) / this.pitch));
    const r1 = Math.ceil((v + (1 + AHEAD) * view) / this.pitch);
    const first = r0 * this.columns, end = Math.min(this.total, r1 * this.columns);
    this.shown.forEach((el, k) => {
      if (k < first || k >= end) { el.remove(); this.shown.delete(k); } else this.place(el, k, v);
    });
    // Visible rows first, then the rows above and below.
    const vr0 = Math.floor((v - PAD) / this.pitch) * this.columns;
    const queue = [], later = [];
    const segments = [];
    for (let k = first; k < end; k++) {
      const s = this.segmentOf(k);
      if (!this.cache.has(s) && segments.indexOf(s) < 0) segments.push(s);
      const el = this.shown.get(k);
      if (el && !el.classList.contains("waiting")) continue;
      if (el && !this.cache.has(s)) continue;
      (k >= vr0 && k < vr0 + (r1 - r0) * this.columns ? queue : later).push(k);
    }
    this.queue = queue.concat(later);
    segments.sort((a, b) => Math.abs(a * this.size - vr0) - Math.abs(b * this.size - vr0));
    this.wanted = segments;
    this.fetchWanted();
    this.drain();
    this.thumb();
  }

  // Make queued tiles, PER_FRAME a frame.
  drain() {
    const v = this.contentTop();
    const fragment = document.createDocumentFragment();
    let made = 0;
    while (this.queue.length && made < PER_FRAME) {
      const k = this.queue.shift();
      const el = this.make(k);
      this.place(el, k, v);
      const old = this.shown.get(k);
      if (old) old.replaceWith(el); else fragment.appendChild(el);
      this.shown.set(k, el);
      made++;
    }
    this.win.appendChild(fragment);
    if (this.queue.length) this.schedule();
  }

  refill(s) {
    // A segment arrived: its tiles near the viewport are made again with their images.
    if (this.shown.size) this.schedule();
    void s;
  }

  groupKey(job) {
    if (!job) return null;
    if (this.group === "prompt") return job.prompt.trim().toLowerCase();
    if (this.group === "parent") return job.parent || job.id;
    return null;
  }

  make(k) {
    const job = this.jobAt(k);
    const el = document.createElement("button");
    el.className = "tile";
    el.dataset.k = k;
    el.style.width = el.style.height = this.tile + "px";
    if (!job) { el.classList.add("waiting"); return el; }
    el.dataset.id = job.id;
    el.title = job.prompt;
    const image = job.images.find((i) => i.object) || null;
    if (!image) {
      el.classList.add("blank");
      el.textContent = "?";
    } else if (image.kind === "mp4") {
      el.classList.add("video");
      el.textContent = "▶";
    } else {
      const img = document.createElement("img");
      img.decoding = "async";
      img.alt = job.prompt;
      img.src = "/thumb/" + image.object + "?size=s";
      el.appendChild(img);
    }
    if (job.images.length > 1) {
      const badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = "×" + job.images.length;
      el.appendChild(badge);
    }
    if (this.group) {
      // Grouping keeps the timeline's order and index: a job with the same prompt (or
      // parent) as the one before it is drawn as part of its group; the group's first tile
      // counts the jobs of its run that are loaded.
      const key = this.groupKey(job);
      if (k > 0 && this.groupKey(this.jobAt(k - 1)) === key) el.classList.add("same");
      else {
        let n = 1;
        while (k + n < this.total && this.groupKey(this.jobAt(k + n)) === key) n++;
        if (n > 1) {
          const tag = document.createElement("span");
          tag.className = "group";
          tag.textContent = n + " jobs";
          el.appendChild(tag);
        }
      }
    }
    if (this.hooks.selected(job.id)) el.classList.add("selected");
    if (this.fresh.has(job.id)) { el.classList.add("new"); this.fresh.delete(job.id); }
    return el;
  }

  setGroup(group) {
    this.group = group;
    this.clearTiles();
    this.schedule();
  }

  repaintSelection() {
    this.shown.forEach((el) => {
      if (el.dataset.id) el.classList.toggle("selected", this.hooks.selected(el.dataset.id));
    });
  }

  // -- the scrubber -----------------------------------------------------------------------
  // Dates down the side from the segments' first/last: a year where it changes, a dot a
  // month; a press or a drag anywhere jumps the grid to that fraction of the timeline.
  marks() {
    const bar = this.scrubber;
    bar.querySelectorAll(".mark, .dot, .thumb").forEach((el) => el.remove());
    const height = bar.clientHeight;
    if (!this.total || !height) return;
    let lastLabel = -1e9, lastMonth = "", lastYear = "", labelYear = "";
    const fragment = document.createDocumentFragment();
    this.segments.forEach((segment, s) => {
      if (!segment.first) return;
      const y = (s * this.size / this.total) * height;
      const month = segment.first.slice(0, 7), year = month.slice(0, 4);
      if (month !== lastMonth) {
        const dot = document.createElement("span");
        dot.className = "dot";
        dot.style.top = y + "px";
        fragment.appendChild(dot);
      }
      if ((year !== lastYear || y - lastLabel > 60) && y - lastLabel > 16 && month !== lastMonth) {
        const mark = document.createElement("span");
        mark.className = "mark";
        mark.style.top = Math.max(6, y) + "px";
        mark.textContent = year !== labelYear ? year : monthName(month);
        fragment.appendChild(mark);
        lastLabel = y;
        labelYear = year;
      }
      lastMonth = month;
      lastYear = year;
    });
    // The end's date at the bottom (a timeline of one segment has no other mark).
    const end = this.segments[this.segments.length - 1];
    if (end && end.last && end.last.slice(0, 4) !== labelYear && height - lastLabel > 16) {
      const mark = document.createElement("span");
      mark.className = "mark";
      mark.style.top = height - 8 + "px";
      mark.textContent = end.last.slice(0, 4);
      fragment.appendChild(mark);
    }
    const thumb = document.createElement("span");
    thumb.className = "thumb";
    fragment.appendChild(thumb);
    bar.appendChild(fragment);
    this.thumbEl = thumb;
    this.thumb();
  }

  thumb() {
    if (!this.thumbEl || !this.total) return;
    this.thumbEl.style.top = (this.topIndex() / this.total) * this.scrubber.clientHeight + "px";
  }

  dateAt(fraction) {
    const k = Math.min(this.total - 1, Math.floor(fraction * this.total));
    const segment = this.segments[this.segmentOf(k)];
    return segment && segment.first ? segment.first.slice(0, 10) : "";
  }

  jumpTo(fraction) {
    fraction = Math.max(0, Math.min(1, fraction));
    this.scrollToIndex(Math.floor(fraction * this.total));
  }

  setupScrubber() {
    const bar = this.scrubber, label = this.scrubLabel;
    let dragging = false;
    const at = (event) => (event.clientY - bar.getBoundingClientRect().top) / bar.clientHeight;
    const hover = (event) => {
      const f = Math.max(0, Math.min(1, at(event))), date = this.dateAt(f);
      label.hidden = !date;
      label.textContent = date;
      label.style.top = f * bar.clientHeight + "px";
    };
    bar.addEventListener("pointerdown", (event) => {
      dragging = true;
      bar.setPointerCapture(event.pointerId);
      this.jumpTo(at(event));
      hover(event);
    });
    bar.addEventListener("pointermove", (event) => {
      hover(event);
      if (dragging) this.jumpTo(at(event));
    });
    const stop = () => { dragging = false; label.hidden = true; };
    bar.addEventListener("pointerup", stop);
    bar.addEventListener("pointercancel", stop);
    bar.addEventListener("pointerleave", () => { if (!dragging) label.hidden = true; });
  }
}

const MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
function monthName(month) { return MONTHS[Number(month.slice(5, 7)) - 1] || month; }
