// The live incident board: filters, one row per incident with its running response timers;
// new incidents appear without reload (SSE), a new red one flashes.

import { api } from "./api.js";
import { onIncident, onLeave } from "./app.js";
import { h, badge, colourBadge, fmtTime } from "./dom.js";
import { runTimers, syncClock, timerChips } from "./timers.js";

const KINDS = ["watchlist", "intrusion", "loitering", "shed", "device_offline", "camera_offline", "outbox_growing"];
const filters = { colour: "", kind: "", site_id: "", state: "" };

function select(name, label, options) {
  const el = h(
    "select",
    { name, "aria-label": label, onchange: (e) => { filters[name] = e.target.value; refresh(); } },
    h("option", { value: "" }, `${label}: all`),
    options.map(([value, text]) => h("option", { value, selected: filters[name] === value }, text)),
  );
  return el;
}

let body = null;
let seen = null;

async function refresh(fresh = new Set()) {
  if (!body) return;
  const query = new URLSearchParams(Object.entries(filters).filter(([, v]) => v));
  const data = await api(`/dashboard/board?${query}`);
  syncClock(data.now);
  const first = seen === null;
  seen = seen || new Set();
  const rows = data.incidents.map((i) => {
    const isNew = !first && (!seen.has(i.id) || fresh.has(i.id));
    seen.add(i.id);
    return row(i, isNew);
  });
  body.replaceChildren(...(rows.length ? rows : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, "No incidents."))]));
}

function decision(i) {
  if (i.kind !== "watchlist") return badge(i.status, i.status);
  if (i.status === "rejected") return badge("rejected", "rejected");
  return i.confirmed ? badge("confirmed", "confirmed") : badge("UNCONFIRMED", "unconfirmed");
}

function row(i, isNew) {
  const ack = i.stages.find((s) => s.name === "acknowledged");
  const canAck = i.kind !== "watchlist" && ack && !ack.done_at && !ack.cancelled && ["open", "confirmed"].includes(i.status);
  const person = i.detail && i.detail.person ? i.detail.person : null;
  return h(
    "tr",
    {
      class: `incident ${i.colour || ""} ${isNew ? "new" : ""} ${isNew && i.colour === "red" ? "new-red" : ""}`,
      dataset: { id: i.id, kind: i.kind, colour: i.colour || "", status: i.status },
    },
    h("td", {}, colourBadge(i.colour), i.escalating ? badge("escalating", "escalating") : null, i.late ? badge("late", "late") : null),
    h("td", {}, h("a", { href: `#/incident/${i.id}` }, i.title)),
    h("td", {}, i.kind, i.level ? ` (${i.level})` : ""),
    h("td", {}, i.site),
    h("td", {}, i.ring || "–"),
    h("td", {}, person ? `${person.name} [${person.tier}]` : "–"),
    h("td", {}, decision(i)),
    h("td", { class: "when" }, fmtTime(i.first_seen), h("br"), fmtTime(i.last_seen)),
    h("td", {}, timerChips(i.stages)),
    h(
      "td",
      {},
      canAck
        ? h("button", { type: "button", class: "ack", onclick: () => acknowledge(i.id) }, "Acknowledge")
        : null,
    ),
  );
}

async function acknowledge(id) {
  await api(`/incidents/${id}/steps/acknowledged`, { method: "POST", body: {} });
  await refresh();
}

export async function boardPage() {
  const sites = await api("/sites");
  body = h("tbody", { id: "board-rows" });
  seen = null;
  const table = h(
    "table",
    { class: "board", id: "board" },
    h(
      "thead",
      {},
      h("tr", {}, ["Colour", "Incident", "Kind", "Site", "Ring", "Person", "Status", "First / last seen", "Response timers", ""].map((t) => h("th", {}, t))),
    ),
    body,
  );
  const page = h(
    "section",
    {},
    h("h1", {}, "Incidents"),
    h(
      "div",
      { class: "filters" },
      select("colour", "Colour", ["red", "orange", "yellow"].map((c) => [c, c])),
      select("kind", "Kind", KINDS.map((k) => [k, k.replace("_", " ")])),
      select("site_id", "Site", sites.map((s) => [s.id, s.name])),
      select("state", "Status", ["open", "confirmed", "rejected", "closed"].map((s) => [s, s])),
    ),
    table,
  );
  await refresh();
  onLeave(runTimers(page));
  let pending = null;
  const fresh = new Set();
  onIncident((alert) => {
    if (alert.reason === "new") fresh.add(alert.incident_id);
    clearTimeout(pending);
    pending = setTimeout(() => {
      refresh(new Set(fresh)).catch(() => {});
      fresh.clear();
    }, 200);
  });
  const poll = setInterval(() => refresh().catch(() => {}), 15000);
  onLeave(() => {
    clearInterval(poll);
    clearTimeout(pending);
    body = null;
  });
  return page;
}
