// Where the API is and how to call it. The address comes from ?api=..., then the one saved in this
// browser, then the server's config.json (when the pages are served by the API), then the default.
const STORAGE_KEY = "clipsearch.api";
const DEFAULT_API = "http://127.0.0.1:5020";
let base = null;

export class ApiError extends Error {
  constructor(status, error, detail) {
    super(detail ? `${error}: ${detail}` : error);
    this.status = status;
    this.error = error;
    this.detail = detail;
  }
}

function clean(address) {
  return address.trim().replace(/\/+$/, "");
}

export function setApiBase(address) {
  base = clean(address);
  localStorage.setItem(STORAGE_KEY, base);
}

export async function apiBase() {
  if (base) return base;
  const fromUrl = new URLSearchParams(location.search).get("api");
  if (fromUrl) {
    setApiBase(fromUrl);
    return base;
  }
  const saved = localStorage.getItem(STORAGE_KEY);
  if (saved) return (base = saved);
  if (location.protocol.startsWith("http")) {
    try {
      const config = await (await fetch("config.json")).json();
      if (config.api) return (base = clean(config.api));
    } catch {
      // not served by the API: fall through to the default address
    }
  }
  return (base = DEFAULT_API);
}

async function call(path, options = {}) {
  const root = await apiBase();
  let response;
  try {
    response = await fetch(root + path, options);
  } catch {
    throw new ApiError(0, "The API is not reachable",
      `no answer from ${root}. Is the server running (scripts/api.sh)? The address can be changed in the top bar.`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? `HTTP ${response.status}`, body?.detail ?? "");
  }
  return body;
}

export const getJSON = (path) => call(path);
export const postJSON = (path, data) =>
  call(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
export const postForm = (path, form) => call(path, { method: "POST", body: form });

export async function apiUrl(path) {
  return (await apiBase()) + path;
}
