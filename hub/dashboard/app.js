// The dashboard shell: language, hash routes, the live incident stream and the red-incident
// alarm.

import { api, auth, login, logout } from "./api.js";
import { h, setSiteZones } from "./dom.js";
import { language, rememberLanguage, rememberedLanguage, setLanguage, t, term, titleOf } from "./i18n.js";
import { boardPage } from "./board.js";
import { incidentPage } from "./incident.js";
import { registryPage, personPage, enrolPage } from "./registry.js";
import { devicesPage, shedsPage } from "./devices.js";
import { auditPage, falseMatchPage } from "./reports.js";

const main = document.getElementById("main");
const live = document.getElementById("live");
const alarm = document.getElementById("alarm");
const top = document.getElementById("top");
let cleanups = [];
let stream = null;
let me = null;
let liveState = ["off", "live.off"];

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
  stream.addEventListener("open", () => setLive("on", "live.on"));
  stream.addEventListener("error", () => {
    setLive("off", "live.reconnecting");
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

function setLive(state, key) {
  liveState = [state, key];
  live.dataset.state = state;
  live.textContent = t(key);
}

function raiseAlarm(alert) {
  const where = [alert.site, alert.ring ? term("ring", alert.ring) : null].filter(Boolean).join(t("list.sep"));
  alarm.replaceChildren(
    h("strong", {}, t("alarm.new_red")),
    h("span", {}, ` ${titleOf(alert)} — ${where} `),
    h("a", { href: `#/incident/${alert.incident_id}`, onclick: clearAlarm }, t("alarm.open")),
    h("button", { type: "button", onclick: clearAlarm }, t("alarm.dismiss")),
  );
  alarm.hidden = false;
  document.title = `(!) ${t("alarm.tab")} – Ringwatch`;
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
  setLive("off", "live.off");
}

function languagePicker(id) {
  const select = h(
    "select",
    { id, "aria-label": "language / 语言" },
    h("option", { value: "zh-CN", selected: language() === "zh-CN" }, "中文"),
    h("option", { value: "en", selected: language() === "en" }, "English"),
  );
  select.addEventListener("change", () => chooseLanguage(select.value));
  return select;
}

async function chooseLanguage(next) {
  rememberLanguage(next);
  await setLanguage(next);
  if (auth.token) await api("/dashboard/preferences", { method: "PUT", body: { language: next } }).catch(() => {});
  setLive(...liveState);
  showWho();
  route();
}

function loginPage() {
  const error = h("p", { class: "error", id: "login-error", role: "alert" });
  const form = h(
    "form",
    { id: "login", class: "card narrow" },
    h("h1", {}, t("login.title")),
    h("label", {}, t("login.username"), h("input", { name: "username", autocomplete: "username", required: true })),
    h("label", {}, t("login.password"), h("input", { name: "password", type: "password", autocomplete: "current-password", required: true })),
    h("div", { class: "row" }, h("button", { type: "submit" }, t("login.submit")), languagePicker("login-lang")),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    try {
      await login(data.get("username"), data.get("password"));
      if (location.hash === "#/board") route();
      else location.hash = "#/board";
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
  [/^#\/audit$/, () => auditPage()],
  [/^#\/false-matches$/, () => falseMatchPage()],
];

const NAV_ROLES = {
  "#/registry": ["admin", "station_officer", "auditor"],
  "#/audit": ["admin", "auditor"],
  "#/false-matches": ["admin", "station_officer", "auditor"],
  "zones.html": ["admin", "technician", "station_officer"],
};

function showWho() {
  if (me) document.getElementById("whoami").textContent = t("nav.whoami", { user: me.username, role: term("role", me.role) });
}

async function signIn() {
  me = await api("/users/me");
  let prefs = await api("/dashboard/preferences");
  const picked = rememberedLanguage();
  if (!prefs.chosen && picked) prefs = await api("/dashboard/preferences", { method: "PUT", body: { language: picked } });
  if (prefs.language !== language()) await setLanguage(prefs.language);
  document.getElementById("lang").value = language();
  setSiteZones(await api("/sites"));
  showWho();
  for (const a of document.querySelectorAll("nav a")) {
    const roles = NAV_ROLES[a.getAttribute("href")];
    a.hidden = Boolean(roles) && !roles.includes(me.role);
  }
}

async function route() {
  for (const fn of cleanups) fn();
  cleanups = [];
  const hash = location.hash || "#/board";
  if (!auth.token) {
    top.hidden = true;
    disconnect();
    main.replaceChildren(loginPage());
    return;
  }
  if (!me) {
    try {
      await signIn();
    } catch {
      return;
    }
  }
  top.hidden = false;
  connect();
  for (const a of document.querySelectorAll("nav a")) {
    a.classList.toggle("here", hash.startsWith(a.getAttribute("href")));
  }
  for (const [pattern, page] of ROUTES) {
    const m = hash.match(pattern);
    if (m) {
      main.replaceChildren(h("p", {}, t("common.loading")));
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

async function start() {
  let lang = rememberedLanguage();
  if (!lang) {
    try {
      lang = (await (await fetch("/api/v1/dashboard/config")).json()).default_language;
    } catch {
      lang = "zh-CN";
    }
  }
  await setLanguage(lang);
  document.getElementById("lang").addEventListener("change", (e) => chooseLanguage(e.target.value));
  window.addEventListener("hashchange", route);
  route();
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
start();
