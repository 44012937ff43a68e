// Where the API is and how to call it. The address comes from ?api=..., then the one saved in this
// browser, then the server's config.json (when the pages are served by the API), then the default.
// A server with a key wants it on every call: it comes from ?key=... once (then it is kept in this
// browser and taken out of the address bar) or from the "key" button of the top bar.
const STORAGE_KEY = "clipsearch.api";
const KEY_STORAGE = "clipsearch.key";
const DEFAULT_API = "http://127.0.0.1:5020";
let base = null;
let key = null;

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

export function setApiKey(value) {
  key = value.trim();
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

export function apiKey() {
  if (key !== null) return key;
  const params = new URLSearchParams(location.search);
  if (params.has("key")) {
    setApiKey(params.get("key"));
    params.delete("key");
    const rest = params.toString();
    history.replaceState(history.state, "", location.pathname + (rest ? `?${rest}` : "") + location.hash);
    return key;
  }
  return (key = localStorage.getItem(KEY_STORAGE) || "");
}

async function call(path, options = {}) {
  const root = await apiBase();
  const headers = { ...(options.headers || {}) };
  if (apiKey()) headers.Authorization = `Bearer ${apiKey()}`;
  let response;
  try {
    response = await fetch(root + path, { ...options, headers });
  } catch {
    throw new ApiError(0, "The API is not reachable",
      `no answer from ${root}. Is the server running (scripts/api.sh)? The address can be changed in the top bar.`);
  }
  const body = await response.json().catch(() => null);
  if (response.status === 401) {
    throw new ApiError(401, "This API needs a key", apiKey()
      ? "the key saved in this browser was refused; set the right one with the key button in the top bar."
      : "open this page once with ?key=YOUR_KEY added to its address, or use the key button in the top bar.");
  }
  if (!response.ok) {
    throw new ApiError(response.status, body?.error ?? `HTTP ${response.status}`, body?.detail ?? "");
  }
  return body;
}

export const getJSON = (path) => call(path);
export const postJSON = (path, data) =>
  call(path, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(data) });
export const postForm = (path, form) => call(path, { method: "POST", body: form });

// An address for an <img>: the API's links are already signed when the server has a key.
export async function apiUrl(path, params = {}) {
  const url = new URL((await apiBase()) + path);
  for (const [name, value] of Object.entries(params)) url.searchParams.set(name, value);
  return url.toString();
}
