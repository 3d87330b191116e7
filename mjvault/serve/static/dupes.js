// The "Duplicates" page: near-duplicate groups (GET /api/dupes) as rows of thumbnails, the
// best original of each marked. A thumbnail opens its job in the lightbox; "Select the
// others" puts a group's other jobs into the timeline's selection, for its batch operations
// (export, collection, forget). Nothing here changes the vault.
import { getJSON, query } from "./api.js";

const $ = (id) => document.getElementById(id);
const plural = (n, word) => n.toLocaleString("en") + " " + word + (n === 1 ? "" : "s");
const pixels = (n) => !n ? "? px" : n >= 1e5 ? (n / 1e6).toFixed(1) + " MP" : n.toLocaleString("en") + " px";

export function dupesPage(hooks) {
  // hooks: {open(jobId), select(jobIds), failed(error)}
  const form = $("dupes-filters");
  let levelsShown = false;

  async function load() {
    const level = $("dupes-level").value;
    const q = $("dupes-q").value.trim();
    $("dupes-status").textContent = "Comparing hashes…";
    const answer = await getJSON("/api/dupes" + query({ level: level || null, q: q || null }));
    if (!levelsShown) {
      levelsShown = true;
      const select = $("dupes-level");
      select.replaceChildren();
      for (const [name, bits] of Object.entries(answer.levels)) {
        const option = new Option(name + " (≤ " + bits + " bits)", name);
        option.selected = name === answer.default_level;
        select.appendChild(option);
      }
    }
    render(answer);
  }

  function render(answer) {
    const list = $("dupes");
    list.replaceChildren();
    const shown = answer.groups.length;
    $("dupes-status").textContent = answer.hashed === 0
      ? "No image hashes yet: run `mjvault thumbs`."
      : plural(answer.total, "group") + ", " + plural(answer.images, "image")
        + (shown < answer.total ? " (the " + shown + " largest shown)" : "");
    answer.groups.forEach((group, n) => list.appendChild(row(group, n)));
  }

  function row(group, n) {
    const item = document.createElement("li");
    item.className = "dupe-group";
    const head = document.createElement("div");
    head.className = "dupe-head";
    head.textContent = "Group " + (n + 1) + ": " + plural(group.size, "image") + ", within " + plural(group.distance, "bit") + " of the best";
    // A grid in the group by one tile shows three other pictures: never offered for clearing.
    const others = [...new Set(group.members.slice(1).filter((m) => !m.tile).map((m) => m.job_id))]
      .filter((id) => id !== group.members[0].job_id);
    const pick = document.createElement("button");
    pick.textContent = "Select the others";
    pick.title = "Add the jobs of every image but the best to the selection (Timeline page); a grid matched by one tile is left out";
    pick.disabled = others.length === 0;
    pick.addEventListener("click", () => hooks.select(others));
    head.appendChild(pick);
    item.appendChild(head);
    const strip = document.createElement("div");
    strip.className = "dupe-members";
    for (const member of group.members) {
      const cell = document.createElement("a");
      cell.href = "#/dupes";
      cell.className = "dupe" + (member.object_id === group.best ? " best" : "");
      cell.dataset.job = member.job_id;
      cell.title = (member.prompt || "") + "\n" + (member.time || "").slice(0, 10);
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = member.job_id;
      img.src = "/thumb/" + member.object_id + "?size=s";
      const label = document.createElement("span");
      label.textContent = (member.object_id === group.best ? "★ best · " : "d " + member.distance + " · ")
        + (member.kind || "?") + " · " + pixels(member.pixels) + (member.upscaled ? " · upscale" : "")
        + (member.tile ? " · tile " + member.tile + " of a grid" : "");
      cell.append(img, label);
      cell.addEventListener("click", (event) => { event.preventDefault(); hooks.open(member.job_id); });
      strip.appendChild(cell);
    }
    item.appendChild(strip);
    return item;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();
    load().catch(hooks.failed);
  });
  return load;
}
