// The hub's API from the browser: the bearer token lives in sessionStorage; the SSE stream
// is authenticated by an HttpOnly cookie that POST /dashboard/session sets.

import { language, t } from "./i18n.js";

const KEY = "ringwatch.token";

export const auth = {
  get token() {
    return sessionStorage.getItem(KEY);
  },
  set(token) {
    sessionStorage.setItem(KEY, token);
  },
  clear() {
    sessionStorage.removeItem(KEY);
  },
};

export class ApiError extends Error {
  /** ``message``: the hub's sentence in the user's language (hub/i18n.py) when it sent one. */
  constructor(status, detail, message) {
    super(message || describe(detail));
    this.status = status;
    this.detail = detail;
  }
}

async function failure(res) {
  let detail = res.statusText;
  let message = null;
  try {
    const body = await res.json();
    detail = body.detail;
    message = body.message || null;
  } catch {
    /* not JSON */
  }
  return new ApiError(res.status, detail, message || t("error.http", { status: res.status }));
}

/** The raw English detail (only when the hub sent no sentence; kept for the logs). */
export function describe(detail) {
  if (detail === undefined || detail === null) return "error";
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    return detail.map((d) => `${(d.loc || []).slice(1).join(".")}: ${d.msg}`).join("; ");
  }
  if (detail.message) return detail.code ? `${detail.message} (${detail.code})` : detail.message;
  return JSON.stringify(detail);
}

export async function api(path, { method = "GET", body, form, headers = {} } = {}) {
  const sent = { "Accept-Language": language(), ...headers };
  if (auth.token) sent.Authorization = `Bearer ${auth.token}`;
  let payload;
  if (form !== undefined) payload = form;
  else if (body !== undefined) {
    sent["Content-Type"] = "application/json";
    payload = JSON.stringify(body);
  }
  const res = await fetch(`/api/v1${path}`, { method, headers: sent, body: payload });
  if (res.status === 401 && !path.startsWith("/login")) {
    auth.clear();
    window.dispatchEvent(new CustomEvent("ringwatch:logged-out"));
    throw new ApiError(401, "session ended", t("error.session_ended"));
  }
  if (!res.ok) throw await failure(res);
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.blob();
}

export async function login(username, password) {
  const form = new URLSearchParams({ username, password });
  const res = await fetch("/api/v1/login/access-token", { method: "POST", body: form, headers: { "Accept-Language": language() } });
  if (!res.ok) throw await failure(res);
  auth.set((await res.json()).access_token);
  await api("/dashboard/session", { method: "POST" });
}

export async function logout() {
  try {
    await api("/dashboard/session", { method: "DELETE" });
  } finally {
    auth.clear();
  }
}

/** An object URL for an authenticated image, or null when there is none (404). */
export async function imageUrl(path) {
  const res = await fetch(path, { headers: { Authorization: `Bearer ${auth.token}` } });
  if (!res.ok) return null;
  return URL.createObjectURL(await res.blob());
}
