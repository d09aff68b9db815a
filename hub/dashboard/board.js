// The live incident board: active incidents by default, filters, search, time range, sort
// and paging; one row per incident with its running response timers (cards on a phone);
// new incidents appear without reload (SSE), a new red one flashes. Acknowledge (and a
// watch-list match's confirm / reject) right from the row, undoable for 10 s.

import { api } from "./api.js";
import { onIncident, onLeave } from "./app.js";
import { h, badge, colourBadge, decisionBadge, fmtTime } from "./dom.js";
import { t, term, titleOf } from "./i18n.js";
import { runTimers, syncClock, timerChips } from "./timers.js";

const KINDS = ["watchlist", "intrusion", "loitering", "shed", "device_offline", "device_quarantined", "camera_offline", "camera_tamper", "outbox_growing"];
const STATES = ["active", "all", "open", "confirmed", "rejected", "closed"];
const RANGES = { all: 0, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };
const SORTS = ["newest", "colour", "last_seen"];
const RANK = { red: 0, orange: 1, yellow: 2 };
const PAGE = 20;
const UNDO_MS = 10_000;
const view = { colour: "", kind: "", site_id: "", state: "active", q: "", range: "all", sort: "newest", page: 0 };
const undoable = new Map(); // incident id -> { stage, until }

let body = null;
let pager = null;
let seen = null;
let all = [];
let hubNowMs = Date.now();
// Filters change faster than the hub answers: only the newest request's answer is shown
// (an older one arriving late would bring back rows of the filter just left), and the
// incidents an alert marked fresh stay fresh until an answer is shown.
let generation = 0;
const pendingFresh = new Set();

function select(name, label, options) {
  return h(
    "select",
    { name, "aria-label": label, onchange: (e) => { view[name] = e.target.value; view.page = 0; refresh(); } },
    options.map(([value, text]) => h("option", { value, selected: view[name] === value }, text)),
  );
}

function active(i) {
  return i.status === "open" || i.status === "confirmed";
}

async function refresh(fresh = new Set()) {
  if (!body) return;
  const mine = ++generation;
  for (const id of fresh) pendingFresh.add(id);
  const query = new URLSearchParams({ limit: "1000" });
  for (const key of ["colour", "kind", "site_id"]) if (view[key]) query.set(key, view[key]);
  if (!["active", "all"].includes(view.state)) query.set("state", view.state);
  const data = await api(`/dashboard/board?${query}`);
  if (mine !== generation || !body) return;
  fresh = new Set(pendingFresh);
  pendingFresh.clear();
  syncClock(data.now);
  hubNowMs = Date.parse(data.now);
  const first = seen === null;
  seen = seen || new Set();
  all = data.incidents.map((i) => {
    const isNew = !first && (!seen.has(i.id) || fresh.has(i.id));
    seen.add(i.id);
    return { ...i, isNew };
  });
  render();
}

function matches(i) {
  if (view.state === "active" && !active(i)) return false;
  const range = RANGES[view.range];
  if (range && hubNowMs - Date.parse(i.last_seen) > range) return false;
  if (!view.q) return true;
  const person = i.detail && i.detail.person ? i.detail.person.name : "";
  const hay = [titleOf(i), i.title, person, i.camera, i.site, i.id].join(" ").toLowerCase();
  return hay.includes(view.q.toLowerCase());
}

function sorted(rows) {
  const by = {
    newest: (a, b) => Date.parse(b.created_at) - Date.parse(a.created_at),
    last_seen: (a, b) => Date.parse(b.last_seen) - Date.parse(a.last_seen),
    colour: (a, b) => (RANK[a.colour] ?? 9) - (RANK[b.colour] ?? 9) || Date.parse(b.last_seen) - Date.parse(a.last_seen),
  }[view.sort];
  return [...rows].sort(by);
}

function render() {
  const rows = sorted(all.filter(matches));
  const pages = Math.max(1, Math.ceil(rows.length / PAGE));
  view.page = Math.min(view.page, pages - 1);
  const shown = rows.slice(view.page * PAGE, (view.page + 1) * PAGE);
  body.replaceChildren(...(shown.length ? shown.map((i) => row(i)) : [h("tr", {}, h("td", { colspan: 10, class: "muted" }, t("board.none")))]));
  pager.replaceChildren(
    h("button", { type: "button", id: "page-prev", disabled: view.page === 0, onclick: () => { view.page -= 1; render(); } }, t("board.prev")),
    h("span", { id: "page-info" }, t("board.page", { page: view.page + 1, pages, count: rows.length })),
    h("button", { type: "button", id: "page-next", disabled: view.page >= pages - 1, onclick: () => { view.page += 1; render(); } }, t("board.next")),
  );
}

function cell(key, ...children) {
  return h("td", { dataset: { label: t(key) } }, ...children);
}

function row(i) {
  const live = active(i);
  const ack = i.stages.find((s) => s.name === "acknowledged");
  const canAck = live && i.kind !== "watchlist" && ack && !ack.done_at && !ack.cancelled;
  const person = i.detail && i.detail.person ? i.detail.person : null;
  const classes = ["incident", live ? i.colour || "" : "inactive", i.isNew ? "new" : "", i.isNew && live && i.colour === "red" ? "new-red" : ""];
  return h(
    "tr",
    { class: classes.join(" ").trim(), dataset: { id: i.id, kind: i.kind, colour: i.colour || "", status: i.status } },
    cell("board.col.colour", colourBadge(i.colour), live && i.escalating ? badge(t("badge.escalating"), "escalating") : null, i.late ? badge(t("badge.late"), "late") : null),
    cell("board.col.incident", h("a", { href: `#/incident/${i.id}`, class: "title" }, titleOf(i))),
    cell("board.col.kind", i.level ? t("kind_level", { kind: term("kind", i.kind), level: term("level", i.level) }) : term("kind", i.kind)),
    cell("board.col.site", i.site),
    cell("board.col.ring", i.ring ? term("ring", i.ring) : "–"),
    cell("board.col.person", person ? t("person_tier", { name: person.name, tier: term("colour", person.tier) }) : "–"),
    cell("board.col.status", i.kind === "watchlist" ? decisionBadge(i) : badge(term("status", i.status), i.status)),
    cell("board.col.seen", h("span", { class: "when" }, fmtTime(i.first_seen, i.site)), h("br"), h("span", { class: "when" }, fmtTime(i.last_seen, i.site))),
    cell("board.col.timers", timerChips(i.stages, i.kind, i.site)),
    h("td", { class: "actions" }, actions(i, canAck)),
  );
}

function actions(i, canAck) {
  const error = h("span", { class: "error", role: "alert" });
  const out = [];
  const undo = undoable.get(i.id);
  if (undo && undo.until > Date.now()) {
    out.push(h("button", { type: "button", class: "undo", onclick: () => undoStep(i.id, undo.stage, error) }, t("board.undo")));
  }
  if (canAck) out.push(h("button", { type: "button", class: "ack", onclick: () => acknowledge(i.id, error) }, t("board.ack")));
  if (i.kind === "watchlist" && i.status === "open") out.push(...decide(i, error));
  out.push(error);
  return out;
}

function decide(i, error) {
  const reason = h("input", { class: "reject-reason", name: "reason", placeholder: t("board.reject_reason"), hidden: true });
  const send = async (path, payload) => {
    try {
      await api(`/incidents/${i.id}/${path}`, { method: "POST", body: payload });
      await refresh();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const reject = h("button", { type: "button", class: "bad reject", onclick: () => {
    if (reason.hidden) { reason.hidden = false; reason.focus(); return; }
    send("reject", { reason: reason.value });
  } }, t("board.reject"));
  return [h("button", { type: "button", class: "good confirm", onclick: () => send("confirm", { reason: null }) }, t("board.confirm")), reject, reason];
}

async function acknowledge(id, error) {
  try {
    await api(`/incidents/${id}/steps/acknowledged`, { method: "POST", body: {} });
    undoable.set(id, { stage: "acknowledged", until: Date.now() + UNDO_MS });
    setTimeout(() => render(), UNDO_MS + 50);
    await refresh();
  } catch (err) {
    error.textContent = err.message;
  }
}

async function undoStep(id, stage, error) {
  try {
    await api(`/incidents/${id}/steps/${stage}/undo`, { method: "POST" });
    undoable.delete(id);
    await refresh();
  } catch (err) {
    error.textContent = err.message;
  }
}

export async function boardPage() {
  const sites = await api("/sites");
  body = h("tbody", { id: "board-rows" });
  pager = h("div", { class: "pager", id: "pager" });
  seen = null;
  const columns = ["colour", "incident", "kind", "site", "ring", "person", "status", "seen", "timers"];
  const table = h(
    "table",
    { class: "board", id: "board" },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", {}, t(`board.col.${c}`))), h("th", {}, ""))),
    body,
  );
  const search = h("input", { type: "search", id: "board-search", value: view.q, placeholder: t("board.search"), "aria-label": t("board.search") });
  search.addEventListener("input", () => { view.q = search.value.trim(); view.page = 0; render(); });
  const page = h(
    "section",
    {},
    h("h1", {}, t("board.title")),
    h(
      "div",
      { class: "filters" },
      select("state", t("board.f.status"), STATES.map((s) => [s, t(`board.state.${s}`)])),
      select("colour", t("board.f.colour"), [["", t("board.f.all_colours")], ...["red", "orange", "yellow"].map((c) => [c, term("colour", c)])]),
      select("kind", t("board.f.kind"), [["", t("board.f.all_kinds")], ...KINDS.map((k) => [k, term("kind", k)])]),
      select("site_id", t("board.f.site"), [["", t("board.f.all_sites")], ...sites.map((s) => [s.id, s.name])]),
      select("range", t("board.f.range"), Object.keys(RANGES).map((r) => [r, t(`board.range.${r}`)])),
      select("sort", t("board.f.sort"), SORTS.map((s) => [s, t(`board.sort.${s}`)])),
      search,
    ),
    h("div", { class: "table-wrap" }, table),
    pager,
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
