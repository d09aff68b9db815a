// Browser notifications (issue 14): a red incident, a missed stage, or a stage about to be
// missed shows a system notification, also while the tab is in the background (the live
// stream and timers keep running there; Chromium throttles timers in a tab hidden for more
// than 5 minutes to once a minute). Turned on per browser with the header's button, which
// asks for the permission (browsers allow that only on a click). A closed tab gets nothing:
// that needs Web Push through a push service, which this hub does not run.

import { h } from "./dom.js";
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
  const where = `${alert.site}${alert.ring ? `, ${alert.ring} ring` : ""}`;
  const hash = `#/incident/${alert.incident_id}`;
  if ((alert.reason === "new" || alert.reason === "escalation") && alert.colour === "red") {
    show(`RED incident: ${alert.title}`, where, `red-${alert.alert_id}`, hash);
  } else if (alert.reason === "missed") {
    show(`Stage missed: ${alert.title}`, where, `missed-${alert.alert_id}`, hash);
  }
}

function scanTimers() {
  const warn = Number(localStorage.getItem(WARN_KEY) || 30) * 1000;
  for (const chip of document.querySelectorAll('.timer[data-state="running"]')) {
    const left = Date.parse(chip.dataset.due) - hubNow();
    if (left > 0 && left <= warn) {
      const row = chip.closest("[data-id]");
      const what = row ? row.dataset.id : location.hash;
      show(`${chip.dataset.label}: ${Math.round(left / 1000)} s left`, "A response stage is about to be missed", `due-${what}-${chip.dataset.stage}-${chip.dataset.due}`, null);
    }
  }
}

function button() {
  const top = document.getElementById("top");
  if (!top || !supported() || document.getElementById("notify-enable")) return;
  const el = h("button", { type: "button", id: "notify-enable" }, "Notifications: off");
  const render = () => {
    const state = Notification.permission;
    el.textContent = state === "granted" ? "Notifications: on" : state === "denied" ? "Notifications: blocked" : "Notifications: off";
    el.disabled = state !== "default";
  };
  el.addEventListener("click", async () => {
    await Notification.requestPermission();
    render();
  });
  render();
  top.insertBefore(el, document.getElementById("logout"));
}

window.addEventListener("ringwatch:incident", (e) => onAlert(e.detail));
setInterval(scanTimers, 2000);
button();
