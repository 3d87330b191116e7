// The gallery: a lazily rendered grid, search as you type, and a lightbox.
// Data comes from data.js (window.MJVAULT_GALLERY): browsers block fetch() of local files.
(function () {
  "use strict";
  var data = window.MJVAULT_GALLERY || { jobs: [] };
  var PAGE = 150; // tiles added each time the end of the grid comes into view

  function fold(text) {
    // Case- and accent-insensitive, like `mjvault search`.
    return text.normalize("NFKD").replace(/[\u0300-\u036f]/g, "").toLowerCase();
  }

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

  var jobs = data.jobs.map(function (row) {
    return {
      id: row[0], time: row[1], type: row[2], prompt: row[3], params: row[4], images: row[5],
      paramsText: fold(row[4]),
      text: fold([row[3], row[4], row[2], row[0], row[1].slice(0, 10)].join(" "))
    };
  });
  var all = []; // one entry per image: [job index, image index]
  jobs.forEach(function (job, j) {
    job.images.forEach(function (_, i) { all.push([j, i]); });
  });

  var grid = document.getElementById("grid");
  var more = document.getElementById("more");
  var count = document.getElementById("count");
  var empty = document.getElementById("empty");
  var search = document.getElementById("search");
  var box = document.getElementById("lightbox");
  var full = document.getElementById("full");
  var video = document.getElementById("video");
  var shown = all;
  var rendered = 0;
  var current = -1;

  document.getElementById("title").textContent = data.title || "mjvault gallery";
  document.title = data.title || "mjvault gallery";

  function tile(k) {
    var entry = shown[k], job = jobs[entry[0]], image = job.images[entry[1]];
    var el = document.createElement("button");
    el.className = "tile";
    el.dataset.k = k;
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
      badge.textContent = (entry[1] + 1) + "/" + job.images.length;
      el.appendChild(badge);
    }
    return el;
  }

  function renderMore() {
    var end = Math.min(rendered + PAGE, shown.length);
    var frag = document.createDocumentFragment();
    for (var k = rendered; k < end; k++) frag.appendChild(tile(k));
    grid.appendChild(frag);
    rendered = end;
  }

  function fillScreen() {
    // Keep adding pages while the sentinel is on screen (large screens, small tiles).
    while (rendered < shown.length && more.getBoundingClientRect().top < window.innerHeight + 800) {
      renderMore();
    }
  }

  function reset() {
    grid.textContent = "";
    rendered = 0;
    var jobsShown = new Set(shown.map(function (e) { return e[0]; })).size;
    count.textContent = shown.length + " image" + (shown.length === 1 ? "" : "s") +
      " · " + jobsShown + " job" + (jobsShown === 1 ? "" : "s");
    empty.hidden = shown.length > 0;
    renderMore();
    fillScreen();
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

  function filter(query) {
    var words = fold(query).split(/\s+/).filter(Boolean);
    if (!words.length) return all;
    var tests = words.map(function (w) {
      var negated = w[0] === "-" && w.length > 1;
      return { negated: negated, test: predicate(negated ? w.slice(1) : w) };
    });
    var matching = new Uint8Array(jobs.length);
    jobs.forEach(function (job, j) {
      for (var t = 0; t < tests.length; t++) if (tests[t].test(job) === tests[t].negated) return;
      matching[j] = 1;
    });
    return all.filter(function (e) { return matching[e[0]]; });
  }

  var timer = 0;
  search.addEventListener("input", function () {
    clearTimeout(timer);
    timer = setTimeout(function () {
      shown = filter(search.value);
      reset();
      if (history.replaceState) history.replaceState(null, "", "#q=" + encodeURIComponent(search.value));
    }, 120);
  });

  if ("IntersectionObserver" in window) {
    new IntersectionObserver(function (entries) {
      if (entries[0].isIntersecting) fillScreen();
    }, { rootMargin: "800px" }).observe(more);
  } else {
    window.addEventListener("scroll", fillScreen);
  }

  function show(k) {
    if (k < 0 || k >= shown.length) return;
    current = k;
    var entry = shown[k], job = jobs[entry[0]], image = job.images[entry[1]];
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
    document.getElementById("which").textContent = (entry[1] + 1) + " of " + job.images.length;
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
    var job = jobs[shown[current][0]];
    var text = (job.prompt + " " + job.params).trim();
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
  if (initial) { search.value = initial; shown = filter(initial); }
  reset();
})();
