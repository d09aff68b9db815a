// Tiny DOM helpers: h() builds elements, fmt* format values for people. Times are shown in
// the site's own time zone, 24-hour ISO (2026-12-02 17:05:09), with the zone where the
// sites in view differ.

import { t, term } from "./i18n.js";

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(key, "");
    else el.setAttribute(key, String(value));
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

const SVG = "http://www.w3.org/2000/svg";

export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// -- time zones ---------------------------------------------------------------------------

const DEFAULT_ZONE = "Asia/Shanghai";
const zones = new Map(); // site id -> IANA zone

export function setSiteZones(sites) {
  zones.clear();
  for (const site of sites) zones.set(site.id, site.time_zone || DEFAULT_ZONE);
}

export function zoneOf(site) {
  return zones.get(site) || [...zones.values()][0] || DEFAULT_ZONE;
}

/** True when the sites in view are not all in one zone (then each time names its zone). */
export function zonesDiffer() {
  return new Set(zones.values()).size > 1;
}

const formats = new Map();

function parts(date, zone) {
  let f = formats.get(zone);
  if (!f) {
    f = new Intl.DateTimeFormat("en-CA", {
      timeZone: zone, hourCycle: "h23", year: "numeric", month: "2-digit", day: "2-digit",
      hour: "2-digit", minute: "2-digit", second: "2-digit", timeZoneName: "shortOffset",
    });
    formats.set(zone, f);
  }
  const out = {};
  for (const p of f.formatToParts(date)) out[p.type] = p.value;
  out.timeZoneName = (out.timeZoneName || "").replace("GMT", "UTC");
  return out;
}

function suffix(p) {
  return zonesDiffer() ? ` ${p.timeZoneName === "UTC+0" ? "UTC" : p.timeZoneName}` : "";
}

/** 2026-12-02 17:05:09 in the site's zone. */
export function fmtTime(iso, site) {
  if (!iso) return "–";
  const p = parts(new Date(iso), zoneOf(site));
  return `${p.year}-${p.month}-${p.day} ${p.hour}:${p.minute}:${p.second}${suffix(p)}`;
}

/** 17:05:09 in the site's zone. */
export function fmtClock(iso, site) {
  if (!iso) return "–";
  const p = parts(new Date(iso), zoneOf(site));
  return `${p.hour}:${p.minute}:${p.second}${suffix(p)}`;
}

/** The date (YYYY-MM-DD) of ``ms`` in the site's zone. */
export function fmtDate(ms, site) {
  const p = parts(new Date(ms), zoneOf(site));
  return `${p.year}-${p.month}-${p.day}`;
}

export function fmtSpan(ms) {
  const total = Math.max(0, Math.round(Math.abs(ms) / 1000));
  const m = Math.floor(total / 60);
  const sec = String(total % 60).padStart(2, "0");
  return `${m}:${sec}`;
}

export function badge(text, cls) {
  return h("span", { class: `badge ${cls || ""}`.trim() }, text ?? "–");
}

export function colourBadge(colour) {
  return h("span", { class: `colour ${colour || "none"}`, title: term("colour", colour || "none") }, colour ? term("colour", colour) : "–");
}

/** The watch-list decision badge: exactly one of unconfirmed / confirmed / rejected. */
export function decisionBadge(i) {
  if (i.status === "rejected") return badge(t("decision.rejected"), "rejected");
  if (i.confirmed) return badge(t("decision.confirmed"), "confirmed");
  return badge(t("decision.unconfirmed"), "unconfirmed");
}
