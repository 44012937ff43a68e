// Text to image search. The query and its options live in the URL (?q=...&k=...&dataset=...&class=...,
// cutoff=auto, group_videos=true, the filters under the API's own names), or ?like=<id> for "more like this",
// so that a search can be shared, reloaded and gone back to. The next page loads when the end of the results
// scrolls into view (or from the "More results" button); the server reads the query's grammar and says how
// (`parsed`).
import { postJSON } from "./api.js";
import { fillDatasets, fillSelect, loadIndexes, renderNav, resultCard, setStatus, showError } from "./ui.js";
import { createViewer } from "./viewer.js";

const FILTERS = ["date_from", "date_to", "folder", "ocr", "min_width", "min_height", "sort", "mode"];
const NUMBERS = new Set(["min_width", "min_height"]);
const DEFAULTS = { sort: "relevance", mode: "clip" };
const form = document.getElementById("search");
const fields = form.elements;
const status = document.getElementById("status");
const results = document.getElementById("results");
const title = document.getElementById("results-title");
const datasetSelect = document.getElementById("dataset");
const partitionSelect = document.getElementById("partition");
const moreButton = document.getElementById("more");
const end = document.getElementById("end");
const sentinel = document.getElementById("sentinel");
let indexes = { datasets: [] };
// The search on screen: its request, where its next page starts, the ids shown. A new search replaces it,
// and answers that come back for an old one are dropped.
let search = null;

const openViewer = createViewer((hit) => navigate({ like: String(hit.id), dataset: hit.dataset, k: form.k.value }));
const observer = new IntersectionObserver((entries) => {
  if (search?.auto && entries.some((entry) => entry.isIntersecting)) loadPage(search);
}, { rootMargin: "0px 0px 300px 0px" });

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function fillPartitions(selected) {
  const dataset = indexes.datasets.find((d) => d.name === datasetSelect.value);
  const partitions = dataset ? dataset.partitions : [];
  fillSelect(partitionSelect, [["", "All classes"],
    ...partitions.map((p) => [p.name, `${p.class_name || p.name} (${p.count})`])], selected || "");
}

function navigate(params) {
  const url = new URL(location.href);
  url.search = new URLSearchParams(Object.entries(params).filter(([, v]) => v)).toString();
  history.pushState(null, "", url);
  run();
}

// Text mode has no CLIP scores to cut: the toggle is off there (the server would refuse it).
const cutoffWanted = () => fields.cutoff.checked && !fields.cutoff.disabled;
const allowCutoff = () => { fields.cutoff.disabled = fields.mode.value === "text"; };

function restoreOptions(params) {
  fields.cutoff.checked = params.get("cutoff") === "auto";
  fields.group_videos.checked = params.get("group_videos") === "true";
  for (const name of FILTERS) {
    fields[name].value = params.get(name) ?? DEFAULTS[name] ?? "";
    if (!fields[name].value && DEFAULTS[name]) fields[name].value = DEFAULTS[name];
  }
  const changed = FILTERS.some((name) => fields[name].value && fields[name].value !== DEFAULTS[name]);
  if (changed || fields.group_videos.checked) {
    document.getElementById("filters").open = true;
  }
  allowCutoff();
}

function filterValues() {
  const values = {};
  for (const name of FILTERS) {
    const value = fields[name].value.trim();
    if (value) values[name] = NUMBERS.has(name) ? Number(value) : value;
  }
  return values;
}

function formParams() {
  const params = { q: form.q.value.trim(), k: form.k.value, dataset: datasetSelect.value,
    class: partitionSelect.value, cutoff: cutoffWanted() ? "auto" : "",
    group_videos: fields.group_videos.checked ? "true" : "" };
  for (const [name, value] of Object.entries(filterValues())) {
    if (value !== DEFAULTS[name]) params[name] = String(value);
  }
  return params;
}

function termChip(term, position) {
  const chip = element("span", "chip");
  const what = "text" in term ? term.text
    : "image_id" in term ? `image #${term.image_id}` : `uploaded image ${term.upload + 1}`;
  const sign = term.weight < 0 ? "−" : position ? "+" : "";
  if (sign) chip.append(element("span", "sign", sign), " ");
  chip.append(element("span", "term", what), " ", element("span", "weight", `×${Math.abs(term.weight)}`));
  chip.title = `weight ${term.weight}`;
  return chip;
}

// How the server read the query, shown only when there was something to read: signs, weights, images.
function showReading(answer) {
  const terms = answer.parsed || [];
  const composed = terms.length > 1 || terms.some((t) => t.weight !== 1 || !("text" in t));
  const parsed = document.getElementById("parsed");
  parsed.replaceChildren(...(composed ? [element("span", "muted", "Read as"), ...terms.map(termChip)] : []));
  parsed.hidden = !composed;
  const cut = answer.cutoff_score;
  const cutoffScore = document.getElementById("cutoff-score");
  cutoffScore.textContent = cut == null ? "" : `Relevant only: showing results scoring at least ${cut.toFixed(3)}.`;
  cutoffScore.hidden = cut == null;
  document.getElementById("reading").hidden = parsed.hidden && cutoffScore.hidden;
}

function showProgress(current, answer) {
  const count = results.children.length;
  const more = current.nextOffset !== null;
  const notes = answer.notes?.length ? ` (${answer.notes.join("; ")})` : "";
  const total = answer.relevant ?? (more ? null : count);  // how many there are in all, where the server knows
  const kind = current.cutoffScore == null ? "" : "relevant ";
  title.textContent = current.heading;
  title.hidden = !count;
  setStatus(status, count ? "" : "empty", !count ? "No images found."
    : `${count} ${total === null ? "results so far" : `of ${total} ${kind}results`}${notes}`);
  moreButton.hidden = !more;
  end.hidden = more || !count || !current.paged;
  end.textContent = `End of results: ${total} ${kind}images.`;
}

async function loadPage(current) {
  if (current.loading || current.nextOffset === null) return;
  current.loading = true;
  moreButton.disabled = true;
  const first = current.nextOffset === 0;
  try {
    const body = current.paged ? { ...current.body, offset: current.nextOffset } : current.body;
    const answer = await postJSON(current.path, body);
    const fresh = answer.results.filter((hit) => !current.seen.has(hit.id));
    const cards = await Promise.all(fresh.map((hit) => resultCard(hit, openViewer)));
    if (current !== search) return;
    fresh.forEach((hit) => current.seen.add(hit.id));
    results.append(...cards);
    current.nextOffset = current.paged ? answer.next_offset ?? null : null;
    if (first) {
      current.cutoffScore = answer.cutoff_score;
      showReading(answer);
    }
    showProgress(current, answer);
  } catch (err) {
    if (current !== search) return;
    current.auto = false;  // no retry loop: the button tries again
    if (first) current.nextOffset = null;
    moreButton.hidden = current.nextOffset === null;
    showError(status, err);
  } finally {
    current.loading = false;
    if (current === search) moreButton.disabled = false;
  }
  if (current === search && current.auto) {
    observer.unobserve(sentinel);
    observer.observe(sentinel);  // observing again reports at once: an end still in view loads the next page
  }
}

function startSearch(path, body, heading) {
  search = { path, body, heading, paged: path === "/search", nextOffset: 0, loading: false, auto: true,
    seen: new Set() };
  results.replaceChildren();
  title.hidden = moreButton.hidden = end.hidden = document.getElementById("reading").hidden = true;
  setStatus(status, "loading", "Searching…");
  return loadPage(search);
}

function run() {
  const params = new URLSearchParams(location.search);
  const k = Number(params.get("k") || form.k.value);
  form.k.value = String(k);
  if (params.get("dataset")) datasetSelect.value = params.get("dataset");
  fillPartitions(params.get("class"));
  restoreOptions(params);
  const dataset = datasetSelect.value || undefined;
  if (params.get("like")) {
    form.q.value = "";
    return startSearch("/similar", { image_id: Number(params.get("like")), k, dataset },
      `Images like #${params.get("like")}`);
  }
  const query = params.get("q") || "";
  form.q.value = query;
  if (!query) {
    search = null;
    results.replaceChildren();
    title.hidden = moreButton.hidden = end.hidden = document.getElementById("reading").hidden = true;
    return setStatus(status, "empty", "Type a description and press Enter.");
  }
  const partitions = partitionSelect.value ? [partitionSelect.value] : undefined;
  const body = { query, k, dataset, partitions, cutoff: cutoffWanted() ? "auto" : undefined,
    group_videos: fields.group_videos.checked || undefined, ...filterValues() };
  return startSearch("/search", body, `Results for “${query}”`);
}

function submit() {
  if (!form.q.value.trim()) {
    setStatus(status, "error", "Type something to search for.");
    return;
  }
  navigate(formParams());
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  submit();
});
for (const name of ["cutoff", "sort", "mode", "group_videos"]) {
  fields[name].addEventListener("change", () => {
    allowCutoff();
    if (form.q.value.trim()) submit();
  });
}
moreButton.addEventListener("click", () => {
  if (!search) return;
  search.auto = true;
  loadPage(search);
});
datasetSelect.addEventListener("change", () => fillPartitions(""));
window.addEventListener("popstate", run);

await renderNav();
try {
  indexes = await loadIndexes();
  fillDatasets(datasetSelect, indexes, new URLSearchParams(location.search).get("dataset"));
  if (!indexes.datasets.length) setStatus(status, "empty", "No image dataset is indexed yet: run build_image_index.py.");
} catch (err) {
  showError(status, err);
}
if (indexes.datasets.length) run();
