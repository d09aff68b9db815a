// The hub's API from the browser: the bearer token lives in sessionStorage; the SSE stream
// is authenticated by an HttpOnly cookie that POST /dashboard/session sets.

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
  constructor(status, detail) {
    super(describe(detail));
    this.status = status;
    this.detail = detail;
  }
}

/** A person-readable message from a FastAPI error detail (string, {code,message} or list). */
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
  const sent = { ...headers };
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
    throw new ApiError(401, "your session has ended; log in again");
  }
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, detail);
  }
  if (res.status === 204) return null;
  const type = res.headers.get("content-type") || "";
  return type.includes("json") ? res.json() : res.blob();
}

export async function login(username, password) {
  const form = new URLSearchParams({ username, password });
  const res = await fetch("/api/v1/login/access-token", { method: "POST", body: form });
  if (!res.ok) {
    let detail = res.statusText;
    try {
      detail = (await res.json()).detail;
    } catch {
      /* not JSON */
    }
    throw new ApiError(res.status, detail);
  }
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
