// Browser notifications (issue 14): a red incident, a missed stage, or a stage about to be
// missed shows a system notification, also while the tab is in the background (the live
// stream and timers keep running there; Chromium throttles timers in a tab hidden for more
// than 5 minutes to once a minute). Turned on per browser with the header's button, which
// asks for the permission (browsers allow that only on a click). A closed tab gets nothing:
// that needs Web Push through a push service, which this hub does not run.

import { h } from "./dom.js";
import { has, t, term, titleOf } from "./i18n.js";
import { hubNow } from "./timers.js";

const WARN_KEY = "ringwatch.notify.warn_s"; // seconds left that count as "about to be missed"
const told = new Set();

function supported() {
  return typeof Notification !== "undefined";
}

function show(title, body, tag, hash) {
  if (!supported() || Notification.permission !== "granted" || told.has(tag)) return;
  told.add(tag);
  const note = new Notification(title, { body, tag, requireInteraction: true });
  note.onclick = () => {
    window.focus();
    if (hash) location.hash = hash;
    note.close();
  };
}

function onAlert(alert) {
  const where = alert.ring ? t("notify.where_ring", { site: alert.site, ring: term("ring", alert.ring) }) : alert.site;
  const title = titleOf(alert);
  const hash = `#/incident/${alert.incident_id}`;
  if ((alert.reason === "new" || alert.reason === "escalation") && alert.colour === "red") {
    show(t("notify.red", { title }), where, `red-${alert.alert_id}`, hash);
  } else if (alert.reason === "missed") {
    show(t("notify.missed", { title }), where, `missed-${alert.alert_id}`, hash);
  }
}

function scanTimers() {
  const warn = Number(localStorage.getItem(WARN_KEY) || 30) * 1000;
  for (const chip of document.querySelectorAll('.timer[data-state="running"]')) {
    const left = Date.parse(chip.dataset.due) - hubNow();
    if (left > 0 && left <= warn) {
      const row = chip.closest("[data-id]");
      const what = row ? row.dataset.id : location.hash;
      show(t("notify.due", { stage: chip.dataset.label, seconds: Math.round(left / 1000) }), t("notify.due_body"), `due-${what}-${chip.dataset.stage}-${chip.dataset.due}`, null);
    }
  }
}

function button() {
  const top = document.getElementById("top");
  if (!top || !supported() || document.getElementById("notify-enable")) return;
  const el = h("button", { type: "button", id: "notify-enable" });
  const render = () => {
    const state = Notification.permission;
    const key = state === "granted" ? "notify.on" : state === "denied" ? "notify.blocked" : "notify.off";
    el.dataset.i18n = key; // filled in by applyStatic when the catalogue loads after this
    el.textContent = has(key) ? t(key) : "";
    el.disabled = state !== "default";
  };
  el.addEventListener("click", async () => {
    await Notification.requestPermission();
    render();
  });
  render();
  const logout = document.getElementById("logout");
  if (logout && logout.parentNode) logout.parentNode.insertBefore(el, logout);
  else top.append(el);
}

window.addEventListener("ringwatch:incident", (e) => onAlert(e.detail));
setInterval(scanTimers, 2000);
button();
