// The duplicate groups of a whole dataset, tier by tier: rows of thumbnails with the suggested keeper
// marked, each image's cosine to it, and the space removing the others would free. The choices live
// in the URL (?dataset=...&tier=...&near=...&similar=...) so that a review can be reloaded and shared.
import { apiUrl, getJSON } from "./api.js";
import { fillDatasets, loadIndexes, renderNav, setStatus, showError } from "./ui.js";

const PAGE = 20;
const TIER_WORDS = { exact: "the same file", near: "the same picture, edited", similar: "a burst or re-take" };
const form = document.getElementById("options");
const status = document.getElementById("status");
const groupsList = document.getElementById("groups");
const more = document.getElementById("more");
let nextOffset = null;

function bytesText(count) {
  const units = ["B", "kB", "MB", "GB", "TB"];
  let unit = 0;
  while (count >= 1000 && unit < units.length - 1) {
    count /= 1000;
    unit += 1;
  }
  return unit ? `${count.toFixed(1)} ${units[unit]}` : `${count} B`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

async function memberFigure(member) {
  const figure = element("figure", member.keep ? "member keep" : "member");
  const link = element("a");
  link.href = await apiUrl(member.image_url);
  link.target = "_blank";
  link.rel = "noopener";
  const img = element("img");
  img.src = await apiUrl(member.thumbnail_url + "?size=192");
  img.alt = `${member.keep ? "suggested keeper: " : ""}${member.path}`;
  img.loading = "lazy";
  link.append(img);
  const caption = element("figcaption");
  caption.append(element("span", member.keep ? "badge keep-badge" : "score",
    member.keep ? "Keep" : `cosine ${member.score.toFixed(4)}`));
  caption.append(element("span", "path", member.path));
  caption.append(element("span", "muted", `${member.width}×${member.height} · ${bytesText(member.bytes)}`));
  figure.append(link, caption);
  return figure;
}

async function groupItem(group) {
  const item = element("li", "dup-group panel");
  item.dataset.tier = group.tier;
  const header = element("div", "dup-header");
  header.append(element("span", `tier tier-${group.tier}`, group.tier));
  header.append(element("span", "", `Group ${group.group} · ${group.members.length} images · ${TIER_WORDS[group.tier]}`));
  header.append(element("span", "frees", `frees ${bytesText(group.bytes_freed)}`));
  const row = element("div", "dup-members");
  row.append(...(await Promise.all(group.members.map(memberFigure))));
  item.append(header, row);
  return item;
}

function showSummary(answer) {
  const t = answer.thresholds;
  const source = t.details?.given ? "given here"
    : t.defaults ? "defaults: too few images to calibrate on"
    : `calibrated for ${t.model?.spec ?? "the model"} ${t.calibrated_at}`;
  document.getElementById("thresholds").textContent =
    `${answer.images} images searched; near from cosine ${t.near.toFixed(4)} with pixels within ${t.near_bits} bits, ` +
    `similar from ${t.similar.toFixed(4)} (${source}).`;
  document.getElementById("thresholds").dataset.defaults = String(Boolean(t.defaults));
  form.near.placeholder = t.near.toFixed(4);
  form.similar.placeholder = t.similar.toFixed(4);
  const rows = Object.entries(answer.totals).map(([tier, total]) => {
    const row = element("tr");
    row.append(element("th", `tier-name tier-${tier}`, tier), element("td", "", String(total.groups)),
      element("td", "", String(total.images)), element("td", "", bytesText(total.bytes_freed)));
    return row;
  });
  document.querySelector("#totals tbody").replaceChildren(...rows);
  document.getElementById("summary").hidden = false;
}

function query(offset) {
  const params = new URLSearchParams({ offset: String(offset), limit: String(PAGE) });
  for (const name of ["dataset", "tier", "near", "similar"]) {
    if (form[name].value) params.set(name, form[name].value);
  }
  return params;
}

async function load(offset) {
  setStatus(status, "loading", offset ? "Loading more groups…" : "Grouping the whole dataset…");
  more.hidden = true;
  try {
    const answer = await getJSON(`/duplicates?${query(offset)}`);
    if (!offset) {
      showSummary(answer);
      groupsList.replaceChildren();
    }
    groupsList.append(...(await Promise.all(answer.groups.map(groupItem))));
    nextOffset = answer.next_offset;
    more.hidden = nextOffset === null;
    const shown = groupsList.children.length;
    setStatus(status, answer.total ? "" : "empty", answer.total
      ? `${shown} of ${answer.total} groups` : "No duplicate groups at these thresholds.");
  } catch (err) {
    if (!offset) groupsList.replaceChildren();
    showError(status, err);
  }
}

function fromUrl() {
  const params = new URLSearchParams(location.search);
  for (const name of ["tier", "near", "similar"]) form[name].value = params.get(name) ?? "";
  return params.get("dataset");
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const params = query(0);
  params.delete("offset");
  params.delete("limit");
  history.replaceState(null, "", `${location.pathname}?${params}`);
  load(0);
});
form.tier.addEventListener("change", () => form.requestSubmit());
more.addEventListener("click", () => load(nextOffset));

await renderNav();
try {
  const wanted = fromUrl();
  const indexes = await loadIndexes();
  fillDatasets(form.dataset, indexes, wanted);
  if (indexes.datasets.length) load(0);
  else setStatus(status, "empty", "No image dataset is indexed yet: run build_image_index.py.");
} catch (err) {
  showError(status, err);
}
