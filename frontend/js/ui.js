// Pieces every page uses: the navigation bar, status messages, result cards, dataset selectors.
import { apiBase, apiKey, apiUrl, getJSON, setApiBase, setApiKey } from "./api.js";

const SVG_NS = "http://www.w3.org/2000/svg";

const PAGES = [
  ["image-search.html", "Search"],
  ["image-classification.html", "Classify"],
  ["similar-images.html", "Similar images"],
  ["duplicates.html", "Duplicates"],
  ["caption-scoring.html", "Caption scores"],
];

export async function renderNav() {
  const here = location.pathname.split("/").pop() || "image-search.html";
  const header = document.createElement("header");
  header.className = "site";
  const nav = document.createElement("nav");
  nav.className = "site";
  nav.setAttribute("aria-label", "Pages");
  const brand = link("image-search.html", "CLIP search", "brand");
  nav.append(brand);
  for (const [href, title] of PAGES) {
    const a = link(href, title, "page");
    if (href === here) a.setAttribute("aria-current", "page");
    nav.append(a);
  }
  const api = document.createElement("span");
  api.className = "api";
  const current = await apiBase();
  api.textContent = `API: ${current} `;
  const change = document.createElement("button");
  change.type = "button";
  change.className = "secondary";
  change.textContent = "change";
  change.addEventListener("click", () => {
    const address = prompt("Address of the CLIP search API", current);
    if (address) {
      setApiBase(address);
      location.reload();
    }
  });
  const keyButton = document.createElement("button");
  keyButton.type = "button";
  keyButton.className = "secondary";
  keyButton.id = "api-key";
  keyButton.textContent = apiKey() ? "key ✓" : "key";
  keyButton.setAttribute("aria-label", "API key");
  keyButton.addEventListener("click", () => {
    const value = prompt("API key of this server (leave empty to forget the saved one)", "");
    if (value !== null) {
      setApiKey(value);
      location.reload();
    }
  });
  api.append(change, " ", keyButton);
  nav.append(api);
  header.append(nav);
  document.body.prepend(header);
}

function link(href, text, className) {
  const a = document.createElement("a");
  a.href = href;
  a.textContent = text;
  a.className = className;
  return a;
}

export function setStatus(element, kind, text) {
  element.className = `status ${kind}`;
  element.textContent = text;
  element.hidden = !text;
}

export function showError(element, err) {
  setStatus(element, "error", err.message || String(err));
}

// An SVG over a picture shown at any size, in the picture's own pixels (`fit`: "meet" as object-fit: contain,
// "slice" as cover), outlining each box [x0, y0, x1, y1]; a box's label, when given, is its tooltip.
export function outlines(width, height, boxes, fit = "meet", labels = []) {
  const svg = document.createElementNS(SVG_NS, "svg");
  svg.setAttribute("class", "regions");
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("preserveAspectRatio", `xMidYMid ${fit}`);
  svg.setAttribute("aria-hidden", "true");
  boxes.forEach(([x0, y0, x1, y1], n) => {
    const rect = document.createElementNS(SVG_NS, "rect");
    Object.entries({ x: x0, y: y0, width: x1 - x0, height: y1 - y0 }).forEach(([k, v]) => rect.setAttribute(k, v));
    if (labels[n]) {
      const title = document.createElementNS(SVG_NS, "title");
      title.textContent = labels[n];
      rect.append(title);
    }
    svg.append(rect);
  });
  return svg;
}

export async function resultCard(hit, onOpen) {
  const item = document.createElement("li");
  item.className = "card";
  item.dataset.id = String(hit.id);
  const button = document.createElement("button");
  button.type = "button";
  const label = hit.class_name || hit.path;
  const taken = hit.captured_at ? `, ${capturedText(hit)}` : "";
  const words = matchedWords(hit);
  const reads = words ? `, reads ${words}` : "";
  const scene = hit.media === "video" ? `, video scene ${sceneSpan(hit)}` : "";
  const part = hit.region ? ", a region of the picture" : "";
  button.setAttribute("aria-label", `${label}${scene}${part}${taken}${reads}, score ${hit.score.toFixed(3)}: open`);
  const img = document.createElement("img");
  img.src = await apiUrl(hit.thumbnail_url);
  img.alt = `${label} (${hit.path})`;
  img.loading = "lazy";
  const meta = document.createElement("div");
  meta.className = "meta";
  const name = document.createElement("span");
  name.className = "class";
  name.textContent = label;
  const score = document.createElement("span");
  score.className = "score";
  score.textContent = hit.score.toFixed(3);
  meta.append(name, score);
  button.append(img);
  if (hit.region) {  // the part of the picture that matched, outlined on its thumbnail (a square, cropped as cover)
    const frame = document.createElement("div");
    frame.className = "region-frame";
    frame.append(outlines(hit.width, hit.height, [hit.region], "slice", ["the region that matched"]));
    button.append(frame);
  }
  button.append(meta);
  if (hit.media === "video") {
    const play = document.createElement("span");
    play.className = "meta play";
    play.textContent = `▶ ${sceneSpan(hit)}`;
    play.title = "A scene of a video";
    button.append(play);
  }
  if (hit.captured_at) {
    const when = document.createElement("time");
    when.className = "meta when";
    when.dateTime = hit.captured_at;
    when.textContent = capturedText(hit);
    button.append(when);
  }
  if (words) {
    const read = document.createElement("span");
    read.className = "meta words";
    read.textContent = `“${words}”`;
    read.title = "Words read in the picture that matched";
    button.append(read);
  }
  button.addEventListener("click", () => onOpen(hit));
  item.append(button);
  return item;
}

// A moment of a video as a clock shows it: m:ss, or h:mm:ss from an hour on (whole seconds, rounded).
export function clockTime(seconds) {
  const total = Math.max(0, Math.round(seconds));
  const [hours, minutes, secs] = [Math.floor(total / 3600), Math.floor(total / 60) % 60, total % 60];
  const pad = (n) => String(n).padStart(2, "0");
  return hours ? `${hours}:${pad(minutes)}:${pad(secs)}` : `${minutes}:${pad(secs)}`;
}

// The span of a scene of a video ("0:03–0:06").
export function sceneSpan(hit) {
  return `${clockTime(hit.video_start)}–${clockTime(hit.video_end)}`;
}

// The words read in the picture that the query or the ocr filter matched, as one line ("" when none).
export function matchedWords(hit) {
  return (hit.text_matches || []).map((match) => match.text).join(" · ");
}

// The capture date of a hit (UTC, as the catalog keeps it) and where it came from.
export function capturedText(hit) {
  return `${hit.captured_from === "mtime" ? "file dated" : "taken"} ${hit.captured_at.slice(0, 10)}`;
}

export async function renderResults(list, hits, onOpen) {
  list.replaceChildren(...(await Promise.all(hits.map((hit) => resultCard(hit, onOpen)))));
}

export async function loadIndexes() {
  return getJSON("/indexes");
}

export function fillSelect(select, options, selected) {
  select.replaceChildren(...options.map(([value, text]) => {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    option.selected = value === selected;
    return option;
  }));
}

export function fillDatasets(select, indexes, selected) {
  fillSelect(select, indexes.datasets.map((d) => [d.name, `${d.name} (${d.count} images)`]), selected);
}
