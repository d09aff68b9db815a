// The dashboard shell: hash routes, the live incident stream and the red-incident alarm.

import { api, auth, login, logout } from "./api.js";
import { h } from "./dom.js";
import { boardPage } from "./board.js";
import { incidentPage } from "./incident.js";
import { registryPage, personPage, enrolPage } from "./registry.js";
import { devicesPage, shedsPage } from "./devices.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
const alarm = document.getElementById("alarm");
let cleanups = [];
let stream = null;
let me = null;

/** Run ``fn`` when the page changes (timers, listeners). */
export function onLeave(fn) {
  cleanups.push(fn);
}

/** Call ``fn(alert)`` for each incident alert while this page is shown. */
export function onIncident(fn) {
  const listener = (e) => fn(e.detail);
  window.addEventListener("ringwatch:incident", listener);
  onLeave(() => window.removeEventListener("ringwatch:incident", listener));
}

export function user() {
  return me;
}

function connect() {
  if (stream) return;
  stream = new EventSource("/api/v1/dashboard/stream");
  stream.addEventListener("open", () => setLive("on", "live"));
  stream.addEventListener("error", () => {
    setLive("off", "live: reconnecting…");
    if (stream && stream.readyState === EventSource.CLOSED) {
      // The browser gave up (e.g. the session cookie was refused): renew it, then reconnect.
      stream = null;
      setTimeout(() => {
        if (auth.token) api("/dashboard/session", { method: "POST" }).then(connect, () => {});
      }, 3000);
    }
  });
  stream.addEventListener("incident", (e) => {
    const alert = JSON.parse(e.data);
    window.dispatchEvent(new CustomEvent("ringwatch:incident", { detail: alert }));
    const raised = alert.reason === "new" || alert.reason === "escalation";
    if (raised && alert.colour === "red") raiseAlarm(alert);
  });
}

function setLive(state, text) {
  live.dataset.state = state;
  live.textContent = text;
}

function raiseAlarm(alert) {
  alarm.replaceChildren(
    h("strong", {}, "NEW RED INCIDENT"),
    h("span", {}, ` ${alert.title} — ${alert.site}${alert.ring ? `, ${alert.ring} ring` : ""} `),
    h("a", { href: `#/incident/${alert.incident_id}`, onclick: clearAlarm }, "Open"),
    h("button", { type: "button", onclick: clearAlarm }, "Dismiss"),
  );
  alarm.hidden = false;
  document.title = "(!) RED incident – Ringwatch";
  beep();
}

function clearAlarm() {
  alarm.hidden = true;
  document.title = "Ringwatch";
}

function beep() {
  try {
    const ctx = new AudioContext();
    const osc = ctx.createOscillator();
    osc.frequency.value = 880;
    osc.connect(ctx.destination);
    osc.start();
    osc.stop(ctx.currentTime + 0.4);
  } catch {
    /* no audio: the banner is enough */
  }
}

function disconnect() {
  if (stream) stream.close();
  stream = null;
  setLive("off", "live: off");
}

function loginPage() {
  const error = h("p", { class: "error", id: "login-error", role: "alert" });
  const form = h(
    "form",
    { id: "login", class: "card narrow" },
    h("h1", {}, "Ringwatch – log in"),
    h("label", {}, "User name", h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, "Password", h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("button", { type: "submit" }, "Log in"),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    try {
      await login(data.get("username"), data.get("password"));
      location.hash = "#/board";
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}

const ROUTES = [
  [/^#\/board$/, () => boardPage()],
  [/^#\/incident\/([\w-]+)$/, (m) => incidentPage(m[1])],
  [/^#\/registry$/, () => registryPage()],
  [/^#\/enrol$/, () => enrolPage()],
  [/^#\/person\/(\d+)$/, (m) => personPage(Number(m[1]))],
  [/^#\/devices$/, () => devicesPage()],
  [/^#\/sheds$/, () => shedsPage()],
];

async function route() {
  for (const fn of cleanups) fn();
  cleanups = [];
  const hash = location.hash || "#/board";
  if (!auth.token) {
    document.getElementById("top").hidden = true;
    disconnect();
    main.replaceChildren(loginPage());
    return;
  }
  if (!me) {
    try {
      me = await api("/users/me");
    } catch {
      return;
    }
    document.getElementById("whoami").textContent = `${me.username} (${me.role})`;
    const registry = ["admin", "station_officer", "auditor"].includes(me.role);
    document.querySelector('nav a[href="#/registry"]').hidden = !registry;
  }
  document.getElementById("top").hidden = false;
  connect();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("here", hash.startsWith(a.getAttribute("href")));
  }
  for (const [pattern, page] of ROUTES) {
    const m = hash.match(pattern);
    if (m) {
      main.replaceChildren(h("p", {}, "Loading…"));
      try {
        main.replaceChildren(await page(m));
      } catch (err) {
        main.replaceChildren(h("p", { class: "error" }, err.message));
      }
      return;
    }
  }
  location.hash = "#/board";
}

window.addEventListener("ringwatch:logged-out", () => {
  me = null;
  disconnect();
  route();
});
document.getElementById("logout").addEventListener("click", async () => {
  await logout();
  me = null;
  disconnect();
  location.hash = "#/login";
  route();
});
window.addEventListener("hashchange", route);
route();
