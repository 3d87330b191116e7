// The gallery: a lazily rendered grid, search as you type, and a lightbox.
// data.js (window.MJVAULT_GALLERY) names the chunk files that hold the jobs; each is a script
// calling MJVAULT_CHUNK (browsers block fetch() of local files) and is loaded when needed:
// as the grid is scrolled, or one after the other while a search reads them all. Matches are
// kept as numbers (chunk, job, image); only the last few chunks stay parsed, so a page of a
// million jobs holds what it shows, not everything.
(function () {
  "use strict";
  var data = window.MJVAULT_GALLERY || { chunks: [] };
  var chunks = data.chunks || []; // [name, jobs, images]
  var PAGE = 150; // tiles added each time the end of the grid comes into view
  var KEEP = 48; // chunks kept parsed, least recently used dropped first

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
  var parsed = new Map(); // chunk number -> jobs, in least recently used order
  var arrived = {}; // chunk number -> jobs, between the script running and its onload
  var waiting = {}; // chunk number -> callbacks
  var missing = 0; // chunk files that would not load

  function toJob(row) {
    return {
      id: row[0], time: row[1], type: row[2], prompt: row[3], params: row[4], images: row[5],
      paramsText: fold(row[4]),
      text: fold([row[3], row[4], row[2], row[0], row[1].slice(0, 10)].join(" "))
    };
  }
  window.MJVAULT_CHUNK = function (name, rows) {
    if (number.hasOwnProperty(name)) arrived[number[name]] = rows.map(toJob);
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
      var jobs = arrived[c];
      delete arrived[c];
      if (!jobs) { missing++; jobs = []; } // gone (the gallery made again meanwhile?)
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

  // -- the listing: what the grid shows, found a chunk at a time ----------------------------
  var grid = document.getElementById("grid");
  var more = document.getElementById("more");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var search = document.getElementById("search");
  var box = document.getElementById("lightbox");
  var full = document.getElementById("full");
  var video = document.getElementById("video");
  var generation = 0; // a new search starts a new one; late answers for the old are dropped
  var tests = null; // the search's word tests; null: every job
  var hits = []; // chunk, job, image: three numbers per image shown
  var hitJobs = 0;
  var scanned = 0; // chunks read so far, in order
  var scanning = false;
  var rendering = false; // waiting for a chunk the next tile needs
  var rendered = 0;
  var current = -1;
  var currentJob = null;

  document.getElementById("title").textContent = data.title || "mjvault gallery";
  document.title = data.title || "mjvault gallery";

  function hitCount() { return hits.length / 3; }
  function jobOf(k) {
    var jobs = parsed.get(hits[3 * k]);
    return jobs ? jobs[hits[3 * k + 1]] : null;
  }

  function update() {
    var text;
    if (!tests) {
      text = plural(data.images || 0, "image") + " · " + plural(data.jobs || 0, "job");
    } else {
      text = plural(hitCount(), "image") + " · " + plural(hitJobs, "job");
      if (scanned < chunks.length) {
        text += " · searching " + Math.floor(100 * scanned / chunks.length) + "%";
      }
    }
    if (missing) text += " · " + plural(missing, "part") + " missing";
    count.textContent = text;
    empty.hidden = !(scanned >= chunks.length && hitCount() === 0);
  }

  // Read the next chunk: its matching images join the listing. A search reads every chunk
  // (one after the other, so the page stays responsive); the plain grid only as it scrolls.
  function scanNext() {
    if (scanning || scanned >= chunks.length) return;
    scanning = true;
    var g = generation, c = scanned;
    load(c, function (jobs) {
      if (g !== generation) return;
      scanning = false;
      scanned = c + 1;
      jobs.forEach(function (job, j) {
        if (tests && !matches(job)) return;
        hitJobs++;
        for (var i = 0; i < job.images.length; i++) hits.push(c, j, i);
      });
      update();
      fillScreen();
      if (tests) setTimeout(scanNext, 0);
    });
  }

  function tile(k) {
    var job = jobOf(k), i = hits[3 * k + 2];
    var el = document.createElement("button");
    el.className = "tile";
    el.dataset.k = k;
    if (!job) { el.classList.add("video"); el.textContent = "?"; return el; }
    var image = job.images[i];
    el.title = job.prompt;
    if (image[2] === "mp4" || !image[0]) {
      el.classList.add("video");
      el.textContent = image[2] === "mp4" ? "▶" : "?";
    } else {
      var img = document.createElement("img");
      img.loading = "lazy";
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

  function renderMore() {
    // Up to PAGE tiles, stopping at one whose chunk is no longer parsed.
    var end = Math.min(rendered + PAGE, hitCount());
    var frag = document.createDocumentFragment();
    while (rendered < end && parsed.has(hits[3 * rendered])) frag.appendChild(tile(rendered++));
    grid.appendChild(frag);
  }

  function near() {
    return more.getBoundingClientRect().top < window.innerHeight + 800;
  }

  function fillScreen() {
    // Keep adding tiles while the sentinel is on screen (large screens, small tiles).
    while (!rendering && near()) {
      if (rendered >= hitCount()) { scanNext(); return; }
      var c = hits[3 * rendered];
      if (!parsed.has(c)) {
        rendering = true;
        var g = generation;
        load(c, function () {
          if (g !== generation) return;
          rendering = false;
          fillScreen();
        });
        return;
      }
      renderMore();
    }
  }

  // "name:value" filters as in `mjvault search`: type:upscale, ar:16:9, v:6 (also 6.1), s:250.
  var aliases = data.aliases || {};
  function escapeRegExp(text) { return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"); }

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
      return function (job) { return pattern.test(job.paramsText); };
    }
    return function (job) { return job.text.indexOf(word) >= 0; };
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
    hits = [];
    hitJobs = 0;
    scanned = 0;
    scanning = false;
    rendering = false;
    rendered = 0;
    grid.textContent = "";
    update();
    scanNext();
  }

  var timer = 0;
  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      start(search.value);
      if (history.replaceState) history.replaceState(null, "", "#q=" + encodeURIComponent(search.value));
    }, 120);
  });

  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries[0].isIntersecting) fillScreen();
    }, { rootMargin: "800px" }).observe(more);
  }
  window.addEventListener("scroll", fillScreen, { passive: true });

  // -- the lightbox -------------------------------------------------------------------------
  function show(k) {
    if (k < 0 || k >= hitCount()) return;
    var c = hits[3 * k];
    if (!parsed.has(c)) {
      var g = generation;
      load(c, function () { if (g === generation) show(k); });
      return;
    }
    var job = jobOf(k);
    if (!job) return;
    current = k;
    currentJob = job;
    var which = hits[3 * k + 2], image = job.images[which];
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

  var initial = decodeURIComponent((location.hash.match(/^#q=(.*)$/) || [])[1] || "");
  if (initial) search.value = initial;
  start(initial);
})();
