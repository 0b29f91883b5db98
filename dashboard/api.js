// Calls to Trawl's API with the signed-in user's token; a failure becomes an ApiError carrying the RFC 9457
// problem (title, detail, validation errors) the API answered.
import { accessToken } from "./auth.js";

// The API lives next to the dashboard: /api/app/ -> /api/.
export const API_ROOT = new URL("../", document.baseURI);

export class ApiError extends Error {
  constructor(status, problem, retryAfter = null) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.title = problem.title || `The request failed (HTTP ${status})`;
    this.detail = problem.detail || "";
    this.type = problem.type || "";
    this.errors = Array.isArray(problem.errors) ? problem.errors : [];
    this.retryAfter = retryAfter;
  }

  get isNotFound() {
    return this.status === 404 && this.type.endsWith("/not-found");
  }
}

export function apiUrl(path, query = {}) {
  const url = new URL(path.replace(/^\//, ""), API_ROOT);
  for (const [name, value] of Object.entries(query)) {
    if (value !== null && value !== undefined && value !== "") url.searchParams.set(name, value);
  }
  return url;
}

export async function authorizedFetch(url, { headers = {}, ...init } = {}) {
  const token = await accessToken();
  return fetch(url, { cache: "no-store", ...init, headers: { Authorization: `Bearer ${token}`, ...headers } });
}

export async function api(path, { method = "GET", query, body, headers = {}, signal } = {}) {
  const init = { method, signal, headers: { Accept: "application/json", ...headers } };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await authorizedFetch(apiUrl(path, query), init);
  if (!response.ok) throw await apiError(response);
  return response.status === 204 ? null : response.json();
}

export async function apiError(response) {
  const type = response.headers.get("Content-Type") || "";
  let problem = {};
  if (type.includes("json")) problem = await response.json().catch(() => ({}));
  const retryAfter = Number.parseInt(response.headers.get("Retry-After") ?? "", 10);
  return new ApiError(response.status, problem, Number.isNaN(retryAfter) ? null : retryAfter);
}

export const jobs = {
  list: (query, signal) => api("jobs", { query, signal }),
  get: (id, signal) => api(`jobs/${id}`, { signal }),
  submit: (body, idempotencyKey) => api("jobs", { method: "POST", body, headers: { "Idempotency-Key": idempotencyKey } }),
  cancel: (id, reason) => api(`jobs/${id}`, { method: "DELETE", body: reason ? { reason } : {} }),
  retry: (id, includeSkipped) => api(`jobs/${id}/retry`, { method: "POST", body: { include_skipped: includeSkipped } }),
  results: (id, query, signal) => api(`jobs/${id}/results`, { query, signal }),
  logs: (id, query, signal) => api(`jobs/${id}/logs`, { query, signal }),
};
