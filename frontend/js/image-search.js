// Text to image search. The query lives in the URL (?q=...&k=...&dataset=...&class=...), or
// ?like=<id> for "more like this", so that a search can be shared, reloaded and gone back to.
import { postJSON } from "./api.js";
import { fillDatasets, fillSelect, loadIndexes, renderNav, renderResults, setStatus, showError } from "./ui.js";
import { createViewer } from "./viewer.js";

const form = document.getElementById("search");
const status = document.getElementById("status");
const results = document.getElementById("results");
const title = document.getElementById("results-title");
const datasetSelect = document.getElementById("dataset");
const partitionSelect = document.getElementById("partition");
let indexes = { datasets: [] };

const openViewer = createViewer((hit) => navigate({ like: String(hit.id), dataset: hit.dataset, k: form.k.value }));

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

async function show(request, heading) {
  setStatus(status, "loading", "Searching…");
  title.hidden = true;
  try {
    const answer = await request;
    await renderResults(results, answer.results, openViewer);
    title.textContent = heading;
    title.hidden = !answer.results.length;
    const notes = answer.notes?.length ? ` (${answer.notes.join("; ")})` : "";
    setStatus(status, answer.results.length ? "" : "empty",
      answer.results.length ? `${answer.results.length} results${notes}` : "No images found.");
  } catch (err) {
    results.replaceChildren();
    showError(status, err);
  }
}

function run() {
  const params = new URLSearchParams(location.search);
  const k = Number(params.get("k") || form.k.value);
  form.k.value = String(k);
  if (params.get("dataset")) datasetSelect.value = params.get("dataset");
  fillPartitions(params.get("class"));
  const dataset = datasetSelect.value || undefined;
  if (params.get("like")) {
    form.q.value = "";
    return show(postJSON("/similar", { image_id: Number(params.get("like")), k, dataset }),
      `Images like #${params.get("like")}`);
  }
  const query = params.get("q") || "";
  form.q.value = query;
  if (!query) {
    results.replaceChildren();
    title.hidden = true;
    return setStatus(status, "empty", "Type a description and press Enter.");
  }
  const partitions = partitionSelect.value ? [partitionSelect.value] : undefined;
  return show(postJSON("/search", { query, k, dataset, partitions }), `Results for “${query}”`);
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  const query = form.q.value.trim();
  if (!query) {
    setStatus(status, "error", "Type something to search for.");
    return;
  }
  navigate({ q: query, k: form.k.value, dataset: datasetSelect.value, class: partitionSelect.value });
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
