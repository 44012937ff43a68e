// Image-caption scores: the similarity matrix of uploaded images and typed captions, as a heat map.
import { postForm } from "./api.js";
import { attachImageInput } from "./image-input.js";
import { renderNav, setStatus, showError } from "./ui.js";

const status = document.getElementById("status");
const table = document.getElementById("matrix");
const input = attachImageInput({
  zone: document.getElementById("dropzone"),
  input: document.getElementById("files"),
  preview: document.getElementById("preview"),
  multiple: true,
  onChange: () => setStatus(status, "", ""),
});

function cell(tag, content) {
  const element = document.createElement(tag);
  if (content instanceof Node) element.append(content);
  else element.textContent = content;
  return element;
}

function heat(score, low, high) {
  const t = high > low ? (score - low) / (high - low) : 1;
  return `hsl(222 70% ${Math.round(92 - t * 52)}%)`;
}

function render(files, captions, answer) {
  const values = answer.matrix.flat();
  const low = Math.min(...values);
  const high = Math.max(...values);
  const head = cell("tr", "");
  head.replaceChildren(cell("th", "image \\ caption"), ...captions.map((c) => {
    const th = cell("th", c);
    th.className = "caption";
    th.scope = "col";
    return th;
  }));
  const rows = answer.matrix.map((row, i) => {
    const img = document.createElement("img");
    img.src = URL.createObjectURL(files[i]);
    img.alt = `image ${i + 1}: ${files[i].name || "pasted"}`;
    const th = cell("th", img);
    th.scope = "row";
    const tr = cell("tr", "");
    tr.replaceChildren(th, ...row.map((score, j) => {
      const td = cell("td", score.toFixed(3));
      td.style.background = heat(score, low, high);
      td.style.color = score > (low + high) / 2 ? "#fff" : "#111";
      if (answer.pairs && i === j) td.className = "pair";
      td.title = `image ${i + 1} × “${captions[j]}”: ${score.toFixed(4)}`;
      return td;
    }));
    return tr;
  });
  table.replaceChildren(head, ...rows);
  document.getElementById("matrix-title").hidden = false;
  document.getElementById("legend").hidden = false;
}

document.getElementById("score").addEventListener("submit", async (event) => {
  event.preventDefault();
  const files = input.files();
  const captions = document.getElementById("captions").value.split("\n").map((c) => c.trim()).filter(Boolean);
  if (!files.length || !captions.length) {
    setStatus(status, "error", "Add at least one image and one caption.");
    return;
  }
  const form = new FormData();
  files.forEach((file) => form.append("images", file));
  captions.forEach((caption) => form.append("captions", caption));
  setStatus(status, "loading", "Scoring…");
  try {
    render(files, captions, await postForm("/similarity", form));
    setStatus(status, "", `${files.length} images × ${captions.length} captions`);
  } catch (err) {
    table.replaceChildren();
    showError(status, err);
  }
});
document.getElementById("reset").addEventListener("click", () => {
  input.clear();
  table.replaceChildren();
});

await renderNav();
