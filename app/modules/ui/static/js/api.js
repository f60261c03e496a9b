// The HTTP client: the session's API key, problem+json errors as exceptions.

const KEY = "treadle.apiKey";

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export const auth = {
  get key() { return sessionStorage.getItem(KEY) || ""; },
  set key(value) {
    if (value) sessionStorage.setItem(KEY, value); else sessionStorage.removeItem(KEY);
  },
  onUnauthorized: () => {},
};

async function problemOf(response) {
  const text = await response.text();
  try {
    const body = JSON.parse(text);
    if (body && typeof body === "object") return { status: response.status, ...body };
  } catch { /* not JSON */ }
  return { status: response.status, title: response.statusText || "Error", detail: text.slice(0, 500) };
}

/** fetch with the API key; JSON in and out; throws ApiError on a non-2xx answer. */
export async function request(method, path, { body, headers = {}, text = false } = {}) {
  // X-Treadle-Request: a header no cross-site page can send, so a keyless API knows
  // this request is not forged (a POST without a body, like cancel, needs it).
  const init = { method, headers: { Accept: "application/json", "X-Treadle-Request": "1", ...headers } };
  if (auth.key) init.headers.Authorization = `Bearer ${auth.key}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch (err) {
    throw new ApiError(0, { title: "Unreachable", detail: `the server did not answer (${err.message})` });
  }
  if (response.status === 401) auth.onUnauthorized();
  if (!response.ok) throw new ApiError(response.status, await problemOf(response));
  if (text) return response.text();
  if (response.status === 204) return null;
  const raw = await response.text();
  return raw ? JSON.parse(raw) : null;
}

export const get = (path, opts) => request("GET", path, opts);
export const post = (path, body, opts = {}) => request("POST", path, { ...opts, body });
export const del = (path) => request("DELETE", path);

/** A query string from an object, skipping empty values. */
export function qs(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : "";
}

export const enc = encodeURIComponent;
