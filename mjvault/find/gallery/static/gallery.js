// The gallery: a virtual grid, search as you type, and a lightbox.
// data.js (window.MJVAULT_GALLERY) names the chunk files that hold the jobs, with the number
// of tiles each makes; each is a script calling MJVAULT_CHUNK (browsers block fetch() of
// local files) and is loaded when needed: when its tiles near the viewport, or one after the
// other while a search reads them all. The grid is virtual: rows have one height, so the page
// is as tall as every tile from the start (the scrollbar is right), and only the rows near
// the viewport exist. A search keeps its matches as numbers (job, image) per chunk; only the
// chunks used last stay parsed. So a page of a hundred thousand jobs holds what it shows.
(function () {
  "use strict";
  var data = window.MJVAULT_GALLERY || { chunks: [] };
  var chunks = data.chunks || []; // [name, jobs, images]
  var KEEP = 16; // chunks kept parsed, least recently used dropped first
  var AHEAD = 1.5; // screens of rows made above and below the viewport
  var LOADS = 2; // chunk files loading at once for the grid
  var GAP = 6, PAD = 8; // px between tiles and around the grid (gallery.css: #grid)
  // Browsers stop laying out near 2^24-2^25 px (Firefox ~17.9M, Chromium 33.5M): 100k jobs in two
  // columns are taller. Past this height the grid keeps it and the scrollbar is mapped onto
  // the rows in proportion (see contentTop). A test may lower it before the page runs.
  var MAX_HEIGHT = window.MJVAULT_MAX_HEIGHT || 8000000;

  function fold(text) {
    // Case- and accent-insensitive, like `mjvault search`.
    return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }
  function plural(n, word) { return n + " " + word + (n === 1 ? "" : "s"); }

  // Image URLs from ids: the vault's object files (plain vault) or decrypted copies.
  function thumbUrl(image) {
    if (!image[0]) return "";
    if (data.layout === "objects") return data.objects + image[0].slice(0, 2) + "/" + image[0];
    return "thumbs/" + image[0] + ".webp";
  }
  function fullUrl(image) {
    if (data.layout === "objects") return data.objects + image[1].slice(0, 2) + "/" + image[1];
    return "media/" + image[1] + "." + image[2];
  }

  // -- chunks -------------------------------------------------------------------------------
  var number = {}; // chunk name -> its place in data.chunks
  chunks.forEach(function (chunk, c) { number[chunk[0]] = c; });
  var parsed = new Map(); // chunk number -> its jobs, in least recently used order
  var arrived = {}; // chunk number -> rows, between the script running and its onload
  var waiting = {}; // chunk number -> callbacks
  var missing = 0; // chunk files that would not load

  function toJob(row) {
    return { id: row[0], time: row[1], type: row[2], prompt: row[3], params: row[4], images: row[5] };
  }
  window.MJVAULT_CHUNK = function (name, rows) {
    if (number.hasOwnProperty(name)) arrived[number[name]] = rows;
  };
  function keep(c, jobs) {
    parsed.delete(c);
    parsed.set(c, jobs);
    while (parsed.size > KEEP) parsed.delete(parsed.keys().next().value);
  }
  function cached(c) {
    var jobs = parsed.get(c);
    if (jobs) keep(c, jobs);
    return jobs;
  }
  function load(c, callback) {
    var jobs = cached(c);
    if (jobs) { callback(jobs); return; }
    if (waiting[c]) { waiting[c].push(callback); return; }
    waiting[c] = [callback];
    var script = document.createElement("script");
    function done() {
      script.remove();
      var rows = arrived[c];
      delete arrived[c];
      if (!rows) { missing++; rows = []; setTimeout(update, 0); } // gone (made again meanwhile?)
      var jobs = rows.map(toJob);
      // Where each of the chunk's tiles comes from: job and image, two numbers a tile.
      var n = 0;
      jobs.forEach(function (job) { n += job.images.length; });
      jobs.at = new Int32Array(2 * n);
      n = 0;
      jobs.forEach(function (job, j) {
        for (var i = 0; i < job.images.length; i++, n++) { jobs.at[2 * n] = j; jobs.at[2 * n + 1] = i; }
      });
      keep(c, jobs);
      var callbacks = waiting[c];
      delete waiting[c];
      callbacks.forEach(function (f) { f(jobs); });
    }
    script.onload = done;
    script.onerror = done;
    script.src = "chunks/" + chunks[c][0] + ".js";
    document.head.appendChild(script);
  }

  // -- the listing: which tile is which -----------------------------------------------------
  // A run of tiles from one chunk: every image of it in order (picks null: the plain grid,
  // whose runs all come from data.js), or a search's matches as (job, image) pairs.
  var runs = []; // {c, first, n, picks}, in tile order
  var total = 0; // tiles listed
  var hitJobs = 0;
  var generation = 0; // a new search starts a new one; late answers for the old are dropped
  var tests = null; // the search's word tests; null: every job
  var scanned = 0; // chunks read so far, in order
  var scanning = false;

  function runOf(k) {
    var lo = 0, hi = runs.length - 1;
    while (lo < hi) {
      var mid = (lo + hi + 1) >> 1;
      if (runs[mid].first <= k) lo = mid; else hi = mid - 1;
    }
    return runs[lo];
  }
  // Tile k: [chunk, job, image], the job null while its chunk is not parsed, and undefined
  // when the chunk is parsed without it (its file would not load).
  function place(k) {
    var run = runOf(k), o = k - run.first, jobs = parsed.get(run.c);
    if (!jobs) return [run.c, null, 0];
    if (o >= jobs.at.length / 2 && !run.picks) return [run.c, undefined, 0];
    var j = run.picks ? run.picks[2 * o] : jobs.at[2 * o];
    var i = run.picks ? run.picks[2 * o + 1] : jobs.at[2 * o + 1];
    return [run.c, jobs[j], i];
  }

  // -- the grid -----------------------------------------------------------------------------
  var grid = document.getElementById("grid");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var search = document.getElementById("search");
  var box = document.getElementById("lightbox");
  var full = document.getElementById("full");
  var video = document.getElementById("video");
  var shown = new Map(); // tile number -> element, only those near the viewport
  var columns = 1, size = 0, pitch = 1; // tiles a row, a tile's side, a row's height (px)
  var natural = 0, height = 0; // the rows' height, and the grid's (at most MAX_HEIGHT)
  var shift = 0; // grid position minus row position, for the rows on screen (0 unless capped)
  var reach = 0; // tiles up to here would be near the viewport (made, once listed)
  var current = -1;
  var currentJob = null;

  document.getElementById("title").textContent = data.title || "mjvault gallery";
  document.title = data.title || "mjvault gallery";

  function update() {
    var text;
    if (!tests) {
      text = plural(data.images || 0, "image") + " · " + plural(data.jobs || 0, "job");
    } else {
      text = plural(total, "image") + " · " + plural(hitJobs, "job");
      if (scanned < chunks.length) {
        text += " · searching " + Math.floor(100 * scanned / chunks.length) + "%";
      }
    }
    if (missing) text += " · " + plural(missing, "part") + " missing";
    count.textContent = text;
    empty.hidden = !(scanned >= chunks.length && total === 0);
  }

  function measure() {
    var tile = parseFloat(getComputedStyle(grid).getPropertyValue("--tile")) || 180;
    var width = grid.clientWidth - 2 * PAD;
    columns = Math.max(1, Math.floor((width + GAP) / (tile + GAP)));
    size = (width - GAP * (columns - 1)) / columns;
    pitch = size + GAP;
  }
  function resize() {
    var rows = Math.ceil(total / columns);
    natural = rows ? 2 * PAD + rows * pitch - GAP : 0;
    height = Math.min(natural, MAX_HEIGHT);
    grid.style.height = height + "px";
  }
  // How far down the rows the top of the screen is, for a scroll of s px into the grid: s
  // itself, unless the grid is capped; then the grid's scrollable range is spread over the
  // rows', so that the top shows the first row and the bottom the last.
  function contentTop(s) {
    var room = height - window.innerHeight;
    if (natural <= height || s <= 0 || room <= 0) return s;
    return Math.min(s, room) * (natural - window.innerHeight) / room;
  }
  function scrollFor(v) {
    var room = height - window.innerHeight;
    if (natural <= height || v <= 0 || room <= 0) return v;
    return v * room / (natural - window.innerHeight);
  }
  function position(el, k) {
    el.style.transform = "translate(" + (PAD + (k % columns) * pitch) + "px," +
      (PAD + Math.floor(k / columns) * pitch + shift) + "px)";
  }

  function tile(k) {
    var at = place(k), job = at[1], i = at[2];
    var el = document.createElement("button");
    el.className = "tile";
    el.dataset.k = k;
    position(el, k);
    el.style.width = el.style.height = size + "px";
    if (job === null) { el.classList.add("waiting"); el.chunk = at[0]; return el; }
    if (!job) { el.classList.add("video"); el.textContent = "?"; return el; }
    var image = job.images[i];
    el.title = job.prompt;
    if (image[2] === "mp4" || !image[0]) {
      el.classList.add("video");
      el.textContent = image[2] === "mp4" ? "▶" : "?";
    } else {
      var img = document.createElement("img");
      img.decoding = "async";
      img.alt = job.prompt;
      img.src = thumbUrl(image);
      el.appendChild(img);
    }
    if (job.images.length > 1) {
      var badge = document.createElement("span");
      badge.className = "badge";
      badge.textContent = (i + 1) + "/" + job.images.length;
      el.appendChild(badge);
    }
    return el;
  }

  // Make the rows near the viewport and drop the others; ask for the chunks their tiles need.
  function render() {
    var s = -grid.getBoundingClientRect().top, screen = window.innerHeight, v = contentTop(s);
    if (s - v !== shift) {
      shift = s - v;
      shown.forEach(position);
    }
    var y0 = v - AHEAD * screen - PAD, y1 = v + (1 + AHEAD) * screen - PAD;
    var first = Math.max(0, Math.floor(y0 / pitch) * columns);
    var end = Math.min(total, Math.max(0, Math.ceil(y1 / pitch) * columns));
    reach = Math.max(0, Math.ceil(y1 / pitch) * columns);
    shown.forEach(function (el, k) {
      if (k < first || k >= end) { el.remove(); shown.delete(k); }
    });
    var needed = [];
    var before = document.createDocumentFragment(), after = document.createDocumentFragment();
    var low = grid.firstElementChild ? Number(grid.firstElementChild.dataset.k) : end;
    for (var k = first; k < end; k++) {
      var old = shown.get(k);
      if (old && old.chunk === undefined) continue;
      if (old && !parsed.has(old.chunk)) { needed.push(old.chunk); continue; }
      var el = tile(k);
      shown.set(k, el);
      if (old) old.replaceWith(el);
      else (k < low ? before : after).appendChild(el);
      if (el.chunk !== undefined) needed.push(el.chunk);
    }
    grid.insertBefore(before, grid.firstChild);
    grid.appendChild(after);
    wanted = needed.filter(function (c, n) { return needed.indexOf(c) === n; });
    fetchWanted();
  }
  // Chunks are asked for a few at a time, and only while their rows are still near the
  // viewport: a scrollbar dragged across the page loads what it stops on, not all it passed.
  var wanted = [];
  var loading = 0;
  function fetchWanted() {
    while (loading < LOADS && wanted.length) {
      var c = wanted.shift();
      if (parsed.has(c)) continue;
      loading++;
      load(c, function () {
        loading--;
        later();
        fetchWanted();
      });
    }
  }
  var timer = 0;
  function later() {
    // Chunks that arrive together are shown in one pass.
    if (!timer) timer = setTimeout(function () { timer = 0; render(); }, 0);
  }

  // Read the next chunk for a search: its matching images join the listing. One chunk at a
  // time (the page stays responsive); each is parsed, tested and then may be dropped.
  var grown = 0; // when the search last grew the grid
  function scanNext() {
    if (scanning || scanned >= chunks.length) return;
    scanning = true;
    var g = generation, c = scanned;
    load(c, function (jobs) {
      if (g !== generation) return;
      scanning = false;
      scanned = c + 1;
      var picks = [];
      jobs.forEach(function (job, j) {
        if (!matches(job)) return;
        hitJobs++;
        for (var i = 0; i < job.images.length; i++) picks.push(j, i);
      });
      if (picks.length) {
        runs.push({ c: c, first: total, n: picks.length / 2, picks: Int32Array.from(picks) });
        total += picks.length / 2;
      }
      // The grid grows (and shows the new rows if they are near the viewport) a few times a
      // second, not at every chunk: each time costs the page a layout.
      var now = Date.now();
      if (scanned >= chunks.length || now - grown > 250 || (picks.length && total - picks.length / 2 < reach)) {
        grown = now;
        resize();
        render();
      }
      update();
      setTimeout(scanNext, 0);
    });
  }

  // "name:value" filters as in `mjvault search`: type:upscale, ar:16:9, v:6 (also 6.1), s:250.
  var aliases = data.aliases || {};
  function escapeRegExp(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }
  function paramsText(job) {
    if (job.paramsText === undefined) job.paramsText = fold(job.params);
    return job.paramsText;
  }
  function allText(job) {
    if (job.text === undefined) {
      job.text = fold([job.prompt, job.params, job.type, job.id, job.time.slice(0, 10)].join(" "));
    }
    return job.text;
  }

  function predicate(word) {
    var field = word.match(/^([a-z_]+):(.+)$/);
    if (field && field[1] === "type") {
      // The words `mjvault search type:` and `sync --type` take (mjvault/jobtypes.py).
      var wanted = field[2], also = (data.type_aliases || {})[wanted] || [];
      return function (job) {
        var type = fold(job.type);
        return type === wanted || type.endsWith("_" + wanted) || also.indexOf(type) >= 0;
      };
    }
    if (field && aliases[field[1]]) {
      // The value, then a space, the end, or a "." (so v:6 finds 6.1 and s:25 not 250).
      var pattern = new RegExp("(^|\\s)--" + aliases[field[1]] + " " + escapeRegExp(field[2]) + "(?=[\\s.]|$)");
      return function (job) { return pattern.test(paramsText(job)); };
    }
    return function (job) { return allText(job).indexOf(word) >= 0; };
  }

  function compile(query) {
    var words = fold(query).split(/\s+/).filter(Boolean);
    if (!words.length) return null;
    return words.map(function (w) {
      var negated = w[0] === "-" && w.length > 1;
      return { negated: negated, test: predicate(negated ? w.slice(1) : w) };
    });
  }

  function matches(job) {
    for (var t = 0; t < tests.length; t++) if (tests[t].test(job) === tests[t].negated) return false;
    return true;
  }

  function start(query) {
    generation++;
    tests = compile(query);
    runs = [];
    total = 0;
    hitJobs = 0;
    scanning = false;
    shown.clear();
    grid.textContent = "";
    if (!tests) {
      // Every tile is known from data.js: the grid is whole before any chunk is read.
      chunks.forEach(function (chunk, c) {
        if (chunk[2]) runs.push({ c: c, first: total, n: chunk[2], picks: null });
        total += chunk[2];
      });
      hitJobs = data.jobs || 0;
      scanned = chunks.length;
    } else {
      scanned = 0;
    }
    window.scrollTo(0, 0);
    resize();
    render();
    update();
    scanNext();
  }

  var typing = 0;
  search.addEventListener("input", function () {
    clearTimeout(typing);
    typing = setTimeout(function () {
      start(search.value);
      if (history.replaceState) history.replaceState(null, "", "#q=" + encodeURIComponent(search.value));
    }, 120);
  });

  window.addEventListener("scroll", render, { passive: true });
  function relayout() {
    // The grid's width changed (the window, or the scrollbar appearing): tiles take their
    // new size and the tile at the top of the screen stays there.
    var v = contentTop(-grid.getBoundingClientRect().top);
    var k = Math.max(0, Math.floor((v - PAD + GAP) / pitch)) * columns; // its gap above
    var was = size;
    measure();
    if (size === was) return;
    resize();
    shown.forEach(function (el) { el.remove(); });
    shown.clear();
    if (k > 0) {
      window.scrollTo(0, window.scrollY + grid.getBoundingClientRect().top +
        scrollFor(PAD + Math.floor(k / columns) * pitch));
    }
    render();
  }
  if ("ResizeObserver" in window) new ResizeObserver(relayout).observe(grid);
  else window.addEventListener("resize", relayout);

  // -- the lightbox -------------------------------------------------------------------------
  function show(k) {
    if (k < 0 || k >= total) return;
    var at = place(k);
    if (at[1] === undefined) return; // its chunk file would not load
    if (at[1] === null) {
      var g = generation;
      load(at[0], function () { if (g === generation) show(k); });
      return;
    }
    var job = at[1];
    current = k;
    currentJob = job;
    var which = at[2], image = job.images[which];
    var isVideo = image[2] === "mp4";
    full.hidden = isVideo;
    video.hidden = !isVideo;
    var src = fullUrl(image);
    if (isVideo) { full.removeAttribute("src"); video.src = src; }
    else { video.removeAttribute("src"); full.src = src; full.alt = job.prompt; }
    document.getElementById("prompt").textContent = job.prompt;
    document.getElementById("params").textContent = job.params;
    document.getElementById("date").textContent = job.time ? job.time.replace("T", " ").replace("+00:00", " UTC") : "unknown";
    document.getElementById("type").textContent = job.type;
    document.getElementById("job").textContent = job.id;
    document.getElementById("which").textContent = (which + 1) + " of " + job.images.length;
    document.getElementById("open").href = src;
    document.getElementById("copy").textContent = "Copy prompt";
    box.hidden = false;
  }

  function close() {
    box.hidden = true;
    video.pause();
    current = -1;
  }

  grid.addEventListener("click", function (event) {
    var el = event.target.closest(".tile");
    if (el) show(Number(el.dataset.k));
  });
  document.getElementById("close").addEventListener("click", close);
  document.getElementById("prev").addEventListener("click", function () { show(current - 1); });
  document.getElementById("next").addEventListener("click", function () { show(current + 1); });
  box.addEventListener("click", function (event) { if (event.target === box) close(); });
  document.addEventListener("keydown", function (event) {
    if (box.hidden) return;
    if (event.key === "Escape") close();
    else if (event.key === "ArrowLeft") show(current - 1);
    else if (event.key === "ArrowRight") show(current + 1);
  });

  document.getElementById("copy").addEventListener("click", function () {
    if (!currentJob) return;
    var text = (currentJob.prompt + " " + currentJob.params).trim();
    var button = this;
    function done() { button.textContent = "Copied"; }
    function fallback() {
      // Clipboard API refused (some browsers on file://): the old way still works.
      var area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "Copy failed"; }
      document.body.removeChild(area);
    }
    if (navigator.clipboard && navigator.clipboard.writeText) {
      navigator.clipboard.writeText(text).then(done, fallback);
    } else {
      fallback();
    }
  });

  measure();
  var initial = decodeURIComponent((location.hash.match(/^#q=(.*)$/) || [])[1] || "");
  if (initial) search.value = initial;
  start(initial);
})();
