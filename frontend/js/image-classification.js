// Zero-shot classification of an uploaded or indexed image, shown as probability bars.
import { apiUrl, getJSON, postForm, postJSON } from "./api.js";
import { attachImageInput } from "./image-input.js";
import { fillSelect, loadIndexes, renderNav, setStatus, showError } from "./ui.js";

const status = document.getElementById("status");
const runButton = document.getElementById("run");
const labels = document.getElementById("labels");
const picker = document.getElementById("picker");
let chosenId = null;

const input = attachImageInput({
  zone: document.getElementById("dropzone"),
  input: document.getElementById("file"),
  preview: document.getElementById("preview"),
  onChange() {
    chosenId = null;
    picker.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", "false"));
    runButton.disabled = false;
    classify();
  },
});

function bar(label) {
  const item = document.createElement("li");
  item.className = "bar";
  const text = document.createElement("div");
  text.className = "label";
  const name = document.createElement("span");
  name.textContent = label.label;
  const value = document.createElement("span");
  value.textContent = `${(label.probability * 100).toFixed(1)} %`;
  text.append(name, value);
  const track = document.createElement("div");
  track.className = "track";
  track.setAttribute("role", "meter");
  track.setAttribute("aria-label", label.label);
  track.setAttribute("aria-valuemin", "0");
  track.setAttribute("aria-valuemax", "100");
  track.setAttribute("aria-valuenow", (label.probability * 100).toFixed(1));
  const fill = document.createElement("div");
  fill.className = "fill";
  fill.style.width = `${Math.max(0.5, label.probability * 100)}%`;
  track.append(fill);
  const cosine = document.createElement("div");
  cosine.className = "cosine";
  cosine.textContent = `cosine ${label.score.toFixed(3)}`;
  item.append(text, track, cosine);
  return item;
}

async function classify() {
  const k = Number(document.getElementById("k").value);
  const vocab = document.getElementById("vocab").value || undefined;
  let request;
  if (chosenId !== null) {
    request = postJSON("/classify", { image_id: chosenId, k, vocab });
  } else if (input.files().length) {
    const form = new FormData();
    form.append("image", input.files()[0]);
    form.append("k", String(k));
    if (vocab) form.append("vocab", vocab);
    request = postForm("/classify", form);
  } else {
    setStatus(status, "error", "Choose an image first.");
    return;
  }
  setStatus(status, "loading", "Classifying…");
  try {
    const answer = await request;
    labels.replaceChildren(...answer.labels.map(bar));
    document.getElementById("labels-title").hidden = false;
    setStatus(status, "", `${answer.labels.length} labels from vocabulary “${answer.vocab}”`);
  } catch (err) {
    labels.replaceChildren();
    showError(status, err);
  }
}

async function find(query) {
  try {
    const answer = await postJSON("/search", { query, k: 24 });
    const buttons = await Promise.all(answer.results.map(async (hit) => {
      const button = document.createElement("button");
      button.type = "button";
      button.setAttribute("aria-pressed", "false");
      const img = document.createElement("img");
      img.src = await apiUrl(hit.thumbnail_url, { size: 96 });
      img.alt = `indexed image ${hit.id}: ${hit.class_name || hit.path}`;
      button.append(img);
      button.addEventListener("click", () => {
        picker.querySelectorAll("button").forEach((b) => b.setAttribute("aria-pressed", "false"));
        button.setAttribute("aria-pressed", "true");
        input.clear();
        chosenId = hit.id;
        runButton.disabled = false;
        classify();
      });
      return button;
    }));
    picker.replaceChildren(...buttons);
  } catch (err) {
    showError(status, err);
  }
}

function figureRow(dataset, entry) {
  const row = document.createElement("tr");
  if (entry.in_use) row.className = "in-use";
  const cells = [dataset, `${entry.model.spec}${entry.in_use ? " (in use)" : ""}`,
    ...["zero_shot_top1", "zero_shot_top5", "precision_at_10", "map", "image_recall_at_10"]
      .map((name) => `${(entry[name] * 100).toFixed(1)} %`),
    String(entry.images), entry.computed_at.slice(0, 10)];
  cells.forEach((text, i) => {
    const cell = document.createElement(i === 0 ? "th" : "td");
    if (i === 0) cell.scope = "row";
    cell.textContent = text;
    row.append(cell);
  });
  return row;
}

async function showEvaluations() {
  const answer = await getJSON("/evaluations");
  const rows = answer.datasets.flatMap((d) => d.evaluations.map((entry) => figureRow(d.dataset, entry)));
  document.querySelector("#figures tbody").replaceChildren(...rows);
  document.getElementById("figures").hidden = !rows.length;
  document.getElementById("evaluation").hidden = !answer.datasets.length;
  if (!rows.length) {
    document.getElementById("evaluation-help").prepend("Not measured on your folders yet. ");
  }
}

document.getElementById("classify").addEventListener("submit", (event) => {
  event.preventDefault();
  classify();
});
document.getElementById("find").addEventListener("submit", (event) => {
  event.preventDefault();
  find(document.getElementById("find-query").value.trim() || "a photo");
});

await renderNav();
try {
  const indexes = await loadIndexes();
  fillSelect(document.getElementById("vocab"),
    indexes.vocabularies.map((v) => [v.name, `${v.name} (${v.entries} labels)`]));
  if (!indexes.vocabularies.length) setStatus(status, "empty", "No vocabulary is indexed yet: run build_text_index.py.");
  if (indexes.datasets.length) find("a photo");
  await showEvaluations();
} catch (err) {
  showError(status, err);
}
