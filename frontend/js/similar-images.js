// "More like this" for an uploaded image, or only its near-duplicates above a threshold.
import { postForm, postJSON } from "./api.js";
import { attachImageInput } from "./image-input.js";
import { fillDatasets, loadIndexes, outlines, renderNav, renderResults, setStatus, showError } from "./ui.js";
import { createViewer } from "./viewer.js";

const status = document.getElementById("status");
const results = document.getElementById("results");
const title = document.getElementById("results-title");
const threshold = document.getElementById("threshold");
const duplicates = document.getElementById("duplicates");
const regions = document.getElementById("regions");
const regionsView = document.getElementById("regions-view");

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

// The upload with its regions outlined and numbered, then each region's own results (issue 28).
async function showRegions(answer, file) {
  const parts = answer.regions || [];
  regionsView.hidden = !parts.length || !file;
  if (regionsView.hidden) return;
  const picture = document.createElement("img");
  picture.src = URL.createObjectURL(file);
  picture.alt = `your image, with its ${parts.length} regions outlined`;
  await picture.decode().catch(() => {});
  const { naturalWidth: width, naturalHeight: height } = picture;
  const labels = parts.map((part, n) => `region ${n + 1}`);
  document.getElementById("upload-regions").replaceChildren(picture,
    outlines(width, height, parts.map((part) => part.box), "meet", labels));
  const sections = await Promise.all(parts.map(async (part, n) => {
    const section = document.createElement("section");
    section.className = "region-results";
    section.dataset.region = String(n + 1);
    const heading = document.createElement("h3");
    heading.id = `region-${n + 1}`;
    const [x0, y0, x1, y1] = part.box;
    heading.textContent = `Region ${n + 1} (${x1 - x0}×${y1 - y0} at ${x0}, ${y0}): ${part.results.length} images`;
    const list = document.createElement("ul");
    list.className = "grid";
    list.setAttribute("aria-labelledby", heading.id);
    await renderResults(list, part.results, openViewer);
    section.append(heading, list);
    return section;
  }));
  document.getElementById("region-results").replaceChildren(...sections);
}

async function show(request, heading, file = null) {
  setStatus(status, "loading", "Looking…");
  regionsView.hidden = true;
  try {
    const answer = await request;
    await renderResults(results, answer.results, openViewer);
    await showRegions(answer, file);
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
  form.append("regions", regions.checked ? "true" : "false");
  show(postForm("/similar", form), duplicates.checked ? "Near-duplicates" : "Most similar indexed images",
    input.files()[0]);
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
