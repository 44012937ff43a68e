// The full-size view of one result, with "more like this". The words read in the picture that the search
// matched are drawn over it as SVG polygons; on request, all the words read in it. The SVG's viewBox is the
// picture's own pixels and it covers the image exactly (preserveAspectRatio "meet", as object-fit: contain),
// so the boxes follow the image through any resize without code. A scene of a video is played instead, from
// the scene's first moment, with its frame as the poster.
import { apiUrl, getJSON } from "./api.js";
import { capturedText, matchedWords, sceneSpan } from "./ui.js";

const SVG = "http://www.w3.org/2000/svg";
const MARKUP = `
  <h2 id="viewer-title"></h2>
  <div class="stage">
    <img id="viewer-image" class="full" alt="">
    <video id="viewer-video" class="full" controls preload="metadata" hidden></video>
    <svg id="viewer-boxes" class="boxes" preserveAspectRatio="xMidYMid meet" role="group"
         aria-label="Words read in the picture"></svg>
  </div>
  <p id="viewer-words" class="muted" hidden></p>
  <p id="viewer-meta" class="muted"></p>
  <div class="actions">
    <label class="check" id="viewer-all-words-field"><input id="viewer-all-words" type="checkbox">
      Show all the words read</label>
    <button id="more-like-this" type="button">More like this</button>
    <a id="viewer-open" target="_blank" rel="noopener">Open the original</a>
    <button id="viewer-close" type="button" class="secondary">Close</button>
  </div>`;

function polygon(box, kind) {
  const shape = document.createElementNS(SVG, "polygon");
  shape.setAttribute("points", box.box.map(([x, y]) => `${x},${y}`).join(" "));
  shape.setAttribute("class", kind);
  const title = document.createElementNS(SVG, "title");
  title.textContent = `${box.text} (${Math.round(box.confidence * 100)} %)`;
  shape.append(title);
  return shape;
}

// The boxes of one picture: every word read (when asked for) under the matched ones.
function drawBoxes(svg, hit, words) {
  svg.setAttribute("viewBox", `0 0 ${hit.width} ${hit.height}`);
  svg.replaceChildren(...(words || []).map((box) => polygon(box, "word")),
    ...(hit.text_matches || []).map((box) => polygon(box, "match")), ...regionOf(hit));
}

// A hit that is a region of its picture (an index built with --regions): the region, outlined.
function regionOf(hit) {
  if (!hit.region) return [];
  const [x0, y0, x1, y1] = hit.region;
  const corners = [[x0, y0], [x1, y0], [x1, y1], [x0, y1]];
  return [polygon({ box: corners, text: "the region that matched", confidence: 1 }, "region")];
}

export function createViewer(onMoreLikeThis) {
  const dialog = document.createElement("dialog");
  dialog.id = "viewer";
  dialog.setAttribute("aria-labelledby", "viewer-title");
  dialog.innerHTML = MARKUP;
  document.body.append(dialog);
  const svg = document.getElementById("viewer-boxes");
  const allWords = document.getElementById("viewer-all-words");
  const wordsLine = document.getElementById("viewer-words");
  const image = document.getElementById("viewer-image");
  const video = document.getElementById("viewer-video");
  let current = null;
  document.getElementById("viewer-close").addEventListener("click", () => dialog.close());
  dialog.addEventListener("close", () => video.pause());
  // The #t= fragment is not always honoured after a change of src: seek once the video knows its length.
  video.addEventListener("loadedmetadata", () => {
    if (current?.media === "video") video.currentTime = current.video_start;
  });
  document.getElementById("more-like-this").addEventListener("click", () => {
    dialog.close();
    onMoreLikeThis(current);
  });

  function showWords(text) {
    wordsLine.textContent = text;
    wordsLine.hidden = !text;
  }

  async function redraw() {
    const hit = current;
    const matched = matchedWords(hit);
    showWords(matched ? `Matched words: ${matched}` : "");
    drawBoxes(svg, hit, null);
    if (!allWords.checked) return;
    try {
      const read = await getJSON(`/images/${hit.id}/text`);
      if (hit !== current || !allWords.checked) return;
      drawBoxes(svg, hit, read.boxes);
      const all = !read.read ? "no text has been read in this picture yet (build with --ocr)"
        : read.text ? `Words read: ${read.text}` : "no words were read in this picture";
      showWords([matched && `Matched words: ${matched}`, all].filter(Boolean).join(" · "));
    } catch (err) {
      if (hit === current) showWords(`The words could not be loaded: ${err.message || err}`);
    }
  }

  // A picture, with its boxes of words; or a scene, played from its start (no words are read in videos).
  function showMedia(isVideo) {
    video.hidden = !isVideo;
    image.hidden = isVideo;
    svg.toggleAttribute("hidden", isVideo);  // an SVG element has no hidden property
    document.getElementById("viewer-all-words-field").hidden = isVideo;
  }

  async function showPicture(hit, label) {
    showMedia(false);
    video.pause();
    video.removeAttribute("src");
    video.removeAttribute("poster");
    video.load();  // stops fetching the last video
    image.src = await apiUrl(hit.image_url);
    image.alt = `${label} (${hit.path}), full size`;
    redraw();
    return image.src;
  }

  async function showScene(hit, label) {
    showMedia(true);
    showWords("");
    svg.replaceChildren();
    image.removeAttribute("src");
    const [source, poster] = await Promise.all([apiUrl(hit.video_url), apiUrl(hit.image_url)]);
    video.poster = poster;
    video.src = `${source}#t=${hit.video_start}`;
    video.setAttribute("aria-label", `${label} (${hit.path}), scene ${sceneSpan(hit)}`);
    return video.src;
  }

  allWords.addEventListener("change", () => current && current.media !== "video" && redraw());
  return async function open(hit) {
    current = hit;
    const label = hit.class_name || hit.path;
    document.getElementById("viewer-title").textContent = label;
    const isVideo = hit.media === "video";
    const original = await (isVideo ? showScene(hit, label) : showPicture(hit, label));
    const what = isVideo ? `scene ${sceneSpan(hit)} of ${hit.path}` : hit.path;
    document.getElementById("viewer-meta").textContent =
      `${what} · ${hit.width}×${hit.height} · dataset ${hit.dataset}, class ${hit.partition} · score ${hit.score.toFixed(3)}` +
      (hit.captured_at ? ` · ${capturedText(hit)}` : "");
    document.getElementById("viewer-open").href = original;
    dialog.showModal();
  };
}
