// The lightbox: one job of the timeline, full size, with its record and lineage.
// ←/→ walk the timeline (loading segments as needed), ↑/↓ the job's images; a parent or a
// child opens in place (it may be outside the current search), Esc closes.
import { getJSON } from "./api.js";

const $ = (id) => document.getElementById(id);

export class Lightbox {
  constructor(timeline, hooks) {
    this.timeline = timeline;
    this.hooks = hooks; // {toggle(job)}
    this.box = $("lightbox");
    this.k = -1; // index in the timeline, -1 for a job reached through lineage
    this.detail = null;
    this.image = 0;
    this.asked = 0;
    $("close").addEventListener("click", () => this.close());
    $("prev").addEventListener("click", () => this.step(-1));
    $("next").addEventListener("click", () => this.step(1));
    $("copy").addEventListener("click", () => this.copy());
    this.box.addEventListener("click", (event) => { if (event.target === this.box) this.close(); });
    $("details").addEventListener("click", (event) => {
      const link = event.target.closest("a[data-job]");
      if (link) { event.preventDefault(); this.openId(link.dataset.job); }
    });
    $("thumbs").addEventListener("click", (event) => {
      const img = event.target.closest("img[data-i]");
      if (img) this.showImage(Number(img.dataset.i));
    });
  }

  get open() { return !this.box.hidden; }

  async show(k) {
    const job = await this.timeline.job(k);
    if (!job) return;
    this.k = k;
    await this.openId(job.id, true);
  }

  async openId(id, keepIndex) {
    const asked = ++this.asked;
    const detail = await getJSON("/api/job/" + encodeURIComponent(id));
    if (asked !== this.asked) return;
    if (!keepIndex) this.k = -1;
    this.detail = detail;
    const tile = detail.tile;
    $("prompt").textContent = tile.prompt;
    $("params").textContent = paramsText(detail.params);
    $("date").textContent = tile.time ? tile.time.slice(0, 19).replace("T", " ") + " UTC" : "unknown";
    $("type").textContent = tile.type || "";
    $("job").textContent = tile.id;
    const lineage = detail.lineage || {};
    $("parent").replaceChildren(lineage.parent ? jobLink(lineage.parent) : dash());
    const children = lineage.children || [];
    $("children").replaceChildren(...(children.length ? children.flatMap((c, n) => n ? [", ", jobLink(c)] : [jobLink(c)]) : [dash()]));
    $("record").textContent = JSON.stringify(detail.record, null, 2);
    $("copy").textContent = "Copy prompt";
    this.box.hidden = false;
    this.showImage(0);
  }

  images() {
    return (this.detail.images || []).filter((i) => i.object);
  }

  showImage(i) {
    const images = this.images();
    const full = $("full"), video = $("video");
    if (!images.length) {
      full.removeAttribute("src");
      $("which").textContent = "no image";
      $("thumbs").replaceChildren();
      return;
    }
    this.image = Math.max(0, Math.min(images.length - 1, i));
    const image = images[this.image], src = "/media/" + image.object;
    const isVideo = image.kind === "mp4";
    full.hidden = isVideo;
    video.hidden = !isVideo;
    if (isVideo) { full.removeAttribute("src"); video.src = src; }
    else { video.removeAttribute("src"); full.src = src; full.alt = this.detail.tile.prompt; }
    $("which").textContent = (this.image + 1) + " of " + images.length;
    $("open").href = src;
    $("download").href = src + "?download=1";
    $("thumbs").replaceChildren(...(images.length > 1 ? images.map((im, n) => {
      const img = document.createElement("img");
      img.src = "/thumb/" + im.object + "?size=s";
      img.dataset.i = n;
      img.alt = "image " + (n + 1);
      if (n === this.image) img.className = "current";
      return img;
    }) : []));
  }

  step(delta) {
    if (this.k < 0) return;
    const k = this.k + delta;
    if (k >= 0 && k < this.timeline.total) this.show(k);
  }

  close() {
    this.box.hidden = true;
    $("video").pause();
    this.asked++;
    if (this.k >= 0) this.timeline.scrollIntoView(this.k);
  }

  copy() {
    if (!this.detail) return;
    const text = (this.detail.tile.prompt + " " + paramsText(this.detail.params)).trim();
    const button = $("copy");
    const done = () => { button.textContent = "Copied"; };
    const fallback = () => {
      const area = document.createElement("textarea");
      area.value = text;
      document.body.appendChild(area);
      area.select();
      try { document.execCommand("copy"); done(); } catch (e) { button.textContent = "Copy failed"; }
      area.remove();
    };
    if (navigator.clipboard && navigator.clipboard.writeText) navigator.clipboard.writeText(text).then(done, fallback);
    else fallback();
  }

  key(event) {
    const images = this.detail ? this.images() : [];
    switch (event.key) {
      case "Escape": this.close(); break;
      case "ArrowLeft": this.step(-1); break;
      case "ArrowRight": this.step(1); break;
      case "ArrowUp": this.showImage(this.image - 1); break;
      case "ArrowDown": this.showImage(this.image + 1); break;
      case "c": this.copy(); break;
      case "o": if (images.length) window.open("/media/" + images[this.image].object, "_blank", "noopener"); break;
      case "d": if (images.length) $("download").click(); break;
      case "p": if (this.detail && this.detail.lineage && this.detail.lineage.parent) this.openId(this.detail.lineage.parent.id); break;
      case "x": if (this.detail) this.hooks.toggle(this.detail.tile); break;
      default: return false;
    }
    return true;
  }
}

// Parameters as Midjourney writes them: --name value.
export function paramsText(params) {
  if (!params) return "";
  return Object.entries(params).map(([name, value]) => {
    if (value === true || value === null || value === "") return "--" + name;
    if (Array.isArray(value)) return value.map((v) => "--" + name + " " + v).join(" ");
    return "--" + name + " " + value;
  }).join(" ");
}

function jobLink(tile) {
  const a = document.createElement("a");
  a.href = "#";
  a.dataset.job = tile.id;
  a.textContent = tile.type ? tile.type + " " + tile.id.slice(0, 8) : tile.id;
  a.title = tile.prompt || tile.id;
  return a;
}
function dash() { return document.createTextNode("—"); }
