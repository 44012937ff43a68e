// The full-size view of one result, with "more like this".
import { apiUrl } from "./api.js";

export function createViewer(onMoreLikeThis) {
  const dialog = document.getElementById("viewer");
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
      `${hit.path} · ${hit.width}×${hit.height} · dataset ${hit.dataset}, class ${hit.partition} · score ${hit.score.toFixed(3)}`;
    document.getElementById("viewer-open").href = image.src;
    dialog.showModal();
  };
}
