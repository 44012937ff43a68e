// "More like this" for an uploaded image, or only its near-duplicates above a threshold.
import { postForm, postJSON } from "./api.js";
import { attachImageInput } from "./image-input.js";
import { fillDatasets, loadIndexes, renderNav, renderResults, setStatus, showError } from "./ui.js";
import { createViewer } from "./viewer.js";

const status = document.getElementById("status");
const results = document.getElementById("results");
const title = document.getElementById("results-title");
const threshold = document.getElementById("threshold");
const duplicates = document.getElementById("duplicates");

const input = attachImageInput({
  zone: document.getElementById("dropzone"),
  input: document.getElementById("file"),
  preview: document.getElementById("preview"),
  onChange() {
    document.getElementById("run").disabled = false;
    find();
  },
});

const openViewer = createViewer((hit) => show(postJSON("/similar", {
  image_id: hit.id, k: Number(document.getElementById("k").value), dataset: hit.dataset,
}), `Images like #${hit.id}`));

async function show(request, heading) {
  setStatus(status, "loading", "Looking…");
  try {
    const answer = await request;
    await renderResults(results, answer.results, openViewer);
    title.textContent = heading;
    title.hidden = !answer.results.length;
    setStatus(status, answer.results.length ? "" : "empty", answer.results.length
      ? `${answer.results.length} images` : "No indexed image is that close. Lower the threshold to see more.");
  } catch (err) {
    results.replaceChildren();
    showError(status, err);
  }
}

function find() {
  if (!input.files().length) {
    setStatus(status, "error", "Choose an image first.");
    return;
  }
  const form = new FormData();
  form.append("image", input.files()[0]);
  form.append("k", document.getElementById("k").value);
  form.append("dataset", document.getElementById("dataset").value);
  form.append("duplicates", duplicates.checked ? "true" : "false");
  form.append("threshold", threshold.value);
  show(postForm("/similar", form), duplicates.checked ? "Near-duplicates" : "Most similar indexed images");
}

threshold.addEventListener("input", () => {
  document.getElementById("threshold-value").value = Number(threshold.value).toFixed(2);
});
document.getElementById("options").addEventListener("submit", (event) => {
  event.preventDefault();
  find();
});

await renderNav();
try {
  const indexes = await loadIndexes();
  fillDatasets(document.getElementById("dataset"), indexes);
  if (!indexes.datasets.length) setStatus(status, "empty", "No image dataset is indexed yet: run build_image_index.py.");
} catch (err) {
  showError(status, err);
}
