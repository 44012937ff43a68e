// The full-size view of one result, with "more like this".
import { apiUrl } from "./api.js";
import { capturedText } from "./ui.js";

const MARKUP = `
  <h2 id="viewer-title"></h2>
  <img id="viewer-image" class="full" alt="">
  <p id="viewer-meta" class="muted"></p>
  <div class="actions">
    <button id="more-like-this" type="button">More like this</button>
    <a id="viewer-open" target="_blank" rel="noopener">Open the original</a>
    <button id="viewer-close" type="button" class="secondary">Close</button>
  </div>`;

export function createViewer(onMoreLikeThis) {
  const dialog = document.createElement("dialog");
  dialog.id = "viewer";
  dialog.setAttribute("aria-labelledby", "viewer-title");
  dialog.innerHTML = MARKUP;
  document.body.append(dialog);
  let current = null;
  document.getElementById("viewer-close").addEventListener("click", () => dialog.close());
  document.getElementById("more-like-this").addEventListener("click", () => {
    dialog.close();
    onMoreLikeThis(current);
  });
  return async function open(hit) {
    current = hit;
    const label = hit.class_name || hit.path;
    document.getElementById("viewer-title").textContent = label;
    const image = document.getElementById("viewer-image");
    image.src = await apiUrl(hit.image_url);
    image.alt = `${label} (${hit.path}), full size`;
    document.getElementById("viewer-meta").textContent =
      `${hit.path} · ${hit.width}×${hit.height} · dataset ${hit.dataset}, class ${hit.partition} · score ${hit.score.toFixed(3)}` +
      (hit.captured_at ? ` · ${capturedText(hit)}` : "");
    document.getElementById("viewer-open").href = image.src;
    dialog.showModal();
  };
}
