// One incident: evidence (live crop beside the enrolled photo), confirm / reject, the
// trajectory as ring transitions on a three-ring diagram and a camera timeline, snapshots,
// response steps as time-stamped buttons (undoable for 10 s), closing (a reason when steps
// are left), and the incident's audit trail.

import { api, imageUrl } from "./api.js";
import { onIncident, onLeave } from "./app.js";
import { h, s, badge, colourBadge, decisionBadge, fmtTime, fmtClock } from "./dom.js";
import { has, t, term, titleOf } from "./i18n.js";
import { runTimers, stageLabel, timerChip } from "./timers.js";
import { mediaCard } from "./media.js"; // issue 14: clips, snapshots, case export

const RINGS = ["outer", "perimeter", "inner"];
const RADIUS = { outer: 130, perimeter: 85, inner: 40 };
const FILL = { yellow: "#f2c200", orange: "#f07d00", red: "#d40000" };
const UNDO_MS = 10_000;
const undoable = new Map(); // "incident/stage" -> until (ms)

function img(path, alt, id) {
  const el = h("img", { alt, id, class: "face" });
  if (!path) return h("div", { class: "face missing", id }, t("incident.no_image", { what: alt }));
  imageUrl(path).then((url) => {
    if (url) el.src = url;
    else el.replaceWith(h("div", { class: "face missing" }, t("incident.image_gone", { what: alt })));
  });
  return el;
}

// The page is drawn again on every alert of its incident: what an officer is typing is
// kept here ("incident/field" -> text) so a new sighting does not wipe a half-written reason.
const drafts = new Map();
function kept(field, key) {
  field.value = drafts.get(key) || "";
  field.addEventListener("input", () => drafts.set(key, field.value));
  return field;
}

// ... and the field being typed in keeps the focus and its cursor (on a phone, losing the
// focus closes the keyboard mid-word).
function focusOf(page) {
  const el = document.activeElement;
  if (!el || !el.id || !page.contains(el)) return null;
  return { id: el.id, start: el.selectionStart, end: el.selectionEnd };
}
function refocus(page, typing) {
  const el = typing && page.querySelector(`#${CSS.escape(typing.id)}`);
  if (!el) return;
  el.focus({ preventScroll: true });
  if (typeof typing.start === "number" && el.setSelectionRange) el.setSelectionRange(typing.start, typing.end);
}

function evidence(i, reload) {
  const e = i.detail || {};
  const p = e.person || {};
  const result = h("p", { class: "error", id: "decision-error", role: "alert" });
  const reason = kept(h("textarea", { id: "reject-reason", name: "reason", rows: 2, placeholder: t("evidence.reject_placeholder") }), `${i.id}/reason`);
  const note = kept(h("input", { id: "confirm-note", name: "note", placeholder: t("evidence.note_placeholder") }), `${i.id}/note`);
  const act = async (path, body) => {
    try {
      await api(`/incidents/${i.id}/${path}`, { method: "POST", body });
      drafts.delete(`${i.id}/reason`);
      drafts.delete(`${i.id}/note`);
      await reload();
    } catch (err) {
      result.textContent = err.message;
    }
  };
  const open = i.status === "open";
  const decided = i.status === "rejected" ? "evidence.rejected_by" : "evidence.confirmed_by";
  return h(
    "section",
    { class: "card", id: "evidence" },
    h("h2", {}, t("evidence.title")),
    h(
      "div",
      { class: "faces" },
      h("figure", {}, img(e.live_crop, t("evidence.live_crop"), "live-crop"), h("figcaption", {}, t("evidence.live_at", { camera: e.camera || i.camera }))),
      h("figure", {}, img(e.enrolled_photo, t("evidence.enrolled_photo"), "enrolled-photo"), h("figcaption", {}, t("evidence.enrolled"))),
      h(
        "dl",
        {},
        h("dt", {}, t("evidence.similarity")), h("dd", { id: "similarity" }, e.similarity != null ? t("evidence.similarity_value", { value: e.similarity.toFixed(3), threshold: e.threshold?.toFixed(3) }) : "–"),
        h("dt", {}, t("evidence.person")), h("dd", {}, h("a", { href: `#/person/${p.id}` }, p.name || "–")),
        h("dt", {}, t("evidence.tier")), h("dd", {}, colourBadge(p.tier)),
        h("dt", {}, t("evidence.reason")), h("dd", {}, p.reason || "–"),
        h("dt", {}, t("evidence.case_reference")), h("dd", { id: "case-ref" }, p.case_reference || "–"),
        h("dt", {}, t("evidence.station")), h("dd", {}, p.station || "–"),
      ),
    ),
    open
      ? h(
          "div",
          { class: "decide" },
          h("p", {}, t("evidence.lead_not_id")),
          h("div", { class: "row" }, note, h("button", { type: "button", id: "confirm", class: "good", onclick: () => act("confirm", { reason: note.value || null }) }, t("evidence.confirm"))),
          h("div", { class: "row" }, reason, h("button", { type: "button", id: "reject", class: "bad", onclick: () => act("reject", { reason: reason.value }) }, t("evidence.reject"))),
          result,
        )
      : h("p", { id: "decision" }, t(decided, { who: i.decided_by, at: fmtTime(i.decided_at, i.site) }), i.decision_reason ? t("evidence.quoted", { reason: i.decision_reason }) : ""),
    liveShot(i, e, p, reload),
    suppression(i),
  );
}

/** Once the match is confirmed: enrol its live crop as one more photo of the person, with
 *  the officer's basis and consent recorded (POST /persons/{id}/photos/from-sighting; more
 *  photos per person find later sightings more often, docs/faces.md). The typed basis and
 *  the hub's answer outlive the page's redraws. */
const liveShots = new Map(); // sighting id -> { text, ok }: the hub's answer
function liveShot(i, e, p, reload) {
  if (i.status !== "confirmed" || !e.sighting_id || !e.live_crop || !p.id) return null;
  const state = liveShots.get(e.sighting_id) || { text: "", ok: false };
  const consent = kept(h("input", { id: "live-shot-consent", name: "consent", placeholder: t("evidence.live_shot_placeholder") }), `${i.id}/live-shot`);
  const add = async () => {
    try {
      await api(`/persons/${p.id}/photos/from-sighting`, { method: "POST", body: { sighting_id: e.sighting_id, consent: consent.value } });
      liveShots.set(e.sighting_id, { ok: true, text: t("evidence.live_shot_added") });
    } catch (err) {
      liveShots.set(e.sighting_id, { ok: false, text: err.message });
    }
    await reload();
  };
  const button = h("button", { type: "button", id: "live-shot", onclick: add }, t("evidence.live_shot"));
  button.disabled = state.ok;
  const result = h("p", { id: "live-shot-result", role: "status", class: state.ok ? "ok" : "error" }, state.text);
  return h("div", { class: "decide", id: "live-shot-form" }, h("p", {}, t("evidence.live_shot_lead")), h("div", { class: "row" }, consent, button), result);
}

function suppression(i) {
  const q = i.suppression;
  if (!q) return null;
  const key = q.active ? "evidence.suppressed_until" : "evidence.suppressed_ended";
  return h("p", { class: "warning", id: "suppression" }, t(key, { camera: q.camera, until: fmtTime(q.until, i.site), hits: q.hits }));
}

/** Consecutive points on the same camera and ring become one segment (a ring transition). */
export function segments(points) {
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (last && last.camera === p.camera && last.ring === p.ring) {
      last.to = p.at;
      last.count += 1;
      if (p.similarity != null) last.similarity = Math.max(last.similarity ?? 0, Number(p.similarity));
      last.level = p.level || last.level;
    } else {
      out.push({ camera: p.camera, ring: p.ring, colour: p.colour, level: p.level, from: p.at, to: p.at, count: 1, similarity: p.similarity != null ? Number(p.similarity) : null });
    }
  }
  return out;
}

function ringDiagram(segs, site) {
  const svg = s("svg", { viewBox: "-150 -150 300 300", class: "rings", id: "ring-diagram", role: "img", "aria-label": t("trajectory.diagram") });
  for (const ring of RINGS) {
    svg.append(s("circle", { r: RADIUS[ring], class: `ring ${ring}` }));
    svg.append(s("text", { x: 0, y: -RADIUS[ring] + 14, class: "ring-label" }, term("ring", ring)));
  }
  const placed = segs.map((p, n) => {
    const r = (RADIUS[p.ring] ?? RADIUS.outer) - 20;
    const angle = Math.PI * (0.15 + (0.7 * n) / Math.max(1, segs.length - 1)) + Math.PI;
    return { ...p, x: Math.cos(angle) * r, y: Math.sin(angle) * r };
  });
  if (placed.length > 1) {
    svg.append(s("polyline", { points: placed.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" "), class: "path" }));
  }
  placed.forEach((p, n) => {
    svg.append(s("circle", { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: 6, fill: FILL[p.colour] || "#666", class: "point" }, s("title", {}, `${fmtClock(p.from, site)} ${p.camera} (${term("ring", p.ring)})`)));
    if (n === placed.length - 1) svg.append(s("text", { x: p.x + 9, y: p.y + 4, class: "now" }, t("trajectory.latest")));
  });
  return svg;
}

function trajectory(i) {
  const campus = ["watchlist", "intrusion", "loitering"].includes(i.kind);
  const raw = (i.detail && i.detail.trajectory) || i.points.filter((p) => p.role !== "person").map((p) => ({ ...p, camera: p.camera_id }));
  const segs = segments(raw);
  const span = (g) => (g.count > 1 ? t("trajectory.span", { from: fmtClock(g.from, i.site), to: fmtClock(g.to, i.site), count: g.count }) : fmtClock(g.from, i.site));
  return h(
    "section",
    { class: "card", id: "trajectory" },
    h("h2", {}, campus ? t("trajectory.title") : t("trajectory.timeline")),
    h("p", { class: "muted" }, t("trajectory.summary", { points: raw.length, segments: segs.length })),
    h(
      "div",
      { class: "split" },
      campus ? ringDiagram(segs, i.site) : null,
      h(
        "div",
        { class: "table-wrap" },
        h(
          "table",
          { class: "timeline", id: "timeline" },
          h("thead", {}, h("tr", {}, ["time", "camera", "ring", "level", "similarity"].map((c) => h("th", {}, t(`trajectory.col.${c}`))))),
          h(
            "tbody",
            {},
            segs.map((g) =>
              h(
                "tr",
                { dataset: { count: g.count } },
                h("td", {}, span(g)),
                h("td", {}, g.camera),
                h("td", {}, g.ring ? term("ring", g.ring) : "–"),
                h("td", {}, g.level ? term("level", g.level) : g.colour ? term("colour", g.colour) : "–"),
                h("td", {}, g.similarity != null ? g.similarity.toFixed(3) : "–"),
              ),
            ),
          ),
        ),
      ),
    ),
  );
}

function snapshots(i) {
  const events = i.points.filter((p) => p.role === "event").slice(-6);
  if (!events.length || i.kind === "watchlist") return null;
  return h(
    "section",
    { class: "card", id: "snapshots" },
    h("h2", {}, t("snapshots.title")),
    h(
      "div",
      { class: "snaps" },
      events.map((p) => {
        const fig = h("figure", {}, h("figcaption", {}, `${fmtClock(p.at, i.site)} ${p.camera_id}${p.level ? ` – ${term("level", p.level)}` : ""}`));
        imageUrl(`/api/v1/dashboard/events/${p.event_id}/snapshot`).then((url) => {
          if (url) fig.prepend(h("img", { src: url, alt: t("snapshots.alt"), class: "snap" }));
          else fig.remove();
        });
        return fig;
      }),
    ),
  );
}

function closeForm(i, left, reload, error) {
  const reason = h("textarea", { id: "close-reason", rows: 2, placeholder: t("close.reason_placeholder") });
  const panel = h(
    "div",
    { class: "confirm-close warning", id: "close-confirm", role: "alertdialog", hidden: true },
    h("p", {}, t("close.unfinished", { stages: left.map((st) => stageLabel(st, i.kind)).join(t("list.sep")) })),
    reason,
    h(
      "div",
      { class: "row" },
      h("button", { type: "button", id: "close-confirmed", class: "bad", onclick: () => send(reason.value) }, t("close.anyway")),
      h("button", { type: "button", id: "close-cancel", onclick: () => { panel.hidden = true; } }, t("close.cancel")),
    ),
  );
  const send = async (why) => {
    try {
      await api(`/incidents/${i.id}/close`, { method: "POST", body: { reason: why || null } });
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const button = h("button", { type: "button", id: "close", onclick: () => {
    if (left.length) panel.hidden = false;
    else send(null);
  } }, t("close.button"));
  return [button, panel];
}

function stepItem(i, st, active, act) {
  const decidedByMatch = i.kind === "watchlist" && st.name === "acknowledged";
  const doable = active && !st.done_at && !st.cancelled && !decidedByMatch;
  const until = undoable.get(`${i.id}/${st.name}`) || 0;
  const canUndo = active && st.done_at && until > Date.now();
  return h(
    "li",
    { dataset: { stage: st.name } },
    timerChip(st, i.kind, i.site),
    st.due_at ? h("span", { class: "muted" }, ` ${t("steps.due", { at: fmtClock(st.due_at, i.site) })}`) : null,
    st.done_at ? h("span", { class: "muted" }, ` ${t("steps.by", { who: st.done_by })}`) : null,
    st.missed_at ? badge(t("badge.escalated"), "escalating") : null,
    doable ? h("button", { type: "button", class: "step", onclick: () => act(st.name, "") }, t("steps.mark_done", { label: stageLabel(st, i.kind) })) : null,
    canUndo ? h("button", { type: "button", class: "undo", onclick: () => act(st.name, "/undo") }, t("steps.undo")) : null,
    decidedByMatch && !st.done_at && active ? h("span", { class: "muted" }, ` ${t("steps.decide_above")}`) : null,
  );
}

function steps(i, stages, reload) {
  const error = h("p", { class: "error", role: "alert", id: "steps-error" });
  const active = ["open", "confirmed"].includes(i.status);
  const act = async (name, suffix) => {
    try {
      await api(`/incidents/${i.id}/steps/${name}${suffix}`, { method: "POST", body: suffix ? undefined : {} });
      if (suffix) undoable.delete(`${i.id}/${name}`);
      else {
        undoable.set(`${i.id}/${name}`, Date.now() + UNDO_MS);
        // Only the expired Undo button goes: a whole re-render would close an open
        // close-confirmation panel and drop the reason being typed.
        setTimeout(() => {
          if ((undoable.get(`${i.id}/${name}`) || 0) > Date.now()) return;
          document.querySelector(`#steps li[data-stage="${name}"] button.undo`)?.remove();
        }, UNDO_MS + 50);
      }
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const left = stages.filter((st) => !st.done_at && !st.cancelled);
  return h(
    "section",
    { class: "card", id: "steps" },
    h("h2", {}, t("steps.title")),
    h("ol", { class: "steps" }, stages.map((st) => stepItem(i, st, active, act))),
    active ? closeForm(i, left, reload, error) : null,
    error,
  );
}

function routing(i, deliveries) {
  const sent = deliveries.filter((d) => d.channel !== "sse");
  if (!sent.length) return null;
  return h(
    "section",
    { class: "card", id: "routing" },
    h("h2", {}, t("routing.title")),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        {},
        h("thead", {}, h("tr", {}, ["when", "why", "channel", "recipient", "status", "attempts"].map((c) => h("th", {}, t(`routing.col.${c}`))))),
        h(
          "tbody",
          {},
          sent.map((d) =>
            h(
              "tr",
              {},
              h("td", {}, fmtTime(d.created_at, i.site)),
              h("td", {}, term("reason", d.reason)),
              h("td", {}, term("channel", d.channel)),
              h("td", {}, d.recipient ? `${term("recipient", d.recipient_kind)} ${d.recipient}` : d.target),
              h("td", { class: "delivery" }, ...deliveryStatus(d)),
              h("td", {}, d.attempts),
            ),
          ),
        ),
      ),
    ),
  );
}

/** A delivery's status, why its last attempt failed in the page's language, and the hub's raw
 * error (English, for the technician) folded away beneath it. */
function deliveryStatus(d) {
  const status = term("delivery", d.status);
  if (!d.last_error) return [status];
  return [
    t("routing.failed", { status, why: t(`delivery_error.${d.error_kind || "other"}`) }),
    h("details", { class: "error-detail" }, h("summary", {}, t("routing.error_detail")), h("code", { class: "raw" }, d.last_error)),
  ];
}

// An audit entry's detail as "label: value" pairs in the page's language: labels from the
// catalogue (a key it lacks is shown as the hub wrote it), stored words (kind, stage, role...)
// as the console names them, times on the site's clock; ids and hashes as written.
const DETAIL_WORDS = { kind: "kind", stage: "stage", role: "role", media: "media", tier: "colour", status: "status", colour: "colour", ring: "ring" };
const DETAIL_TIMES = new Set(["due", "done_at", "until"]);

function detailValue(key, value, site) {
  if (value === null || value === undefined || value === "") return { text: "–" };
  if (typeof value === "boolean") return { text: t(value ? "common.yes" : "common.no") };
  if (Object.hasOwn(DETAIL_WORDS, key) && typeof value === "string") return { text: term(DETAIL_WORDS[key], value) };
  if (DETAIL_TIMES.has(key) && typeof value === "string") return { text: fmtTime(value, site) };
  if (Array.isArray(value)) return { text: value.map((v) => (typeof v === "object" ? JSON.stringify(v) : String(v))).join(", "), raw: true };
  if (typeof value === "object") return { text: JSON.stringify(value), raw: true };
  return { text: String(value), raw: typeof value === "string" };
}

function detailPairs(detail, site) {
  return Object.entries(detail || {}).map(([key, value]) => {
    const known = has(`audit.detail.${key}`);
    const shown = detailValue(key, value, site);
    return h(
      "span",
      { class: "pair", dataset: { key } },
      h("span", { class: known ? "" : "raw" }, known ? t(`audit.detail.${key}`) : key),
      t("audit.detail.sep"),
      h("span", { class: shown.raw ? "raw" : "" }, shown.text),
    );
  });
}

export function auditRows(entries, site) {
  return entries.map((a) =>
    h(
      "tr",
      {},
      h("td", { dataset: { label: t("audit.col.when") } }, fmtTime(a.at, site)),
      h("td", { class: "raw", dataset: { label: t("audit.col.who") } }, a.actor),
      h("td", { dataset: { label: t("audit.col.role") } }, term("role", a.role)),
      h("td", { dataset: { label: t("audit.col.action") } }, term("action", a.action), a.entity && a.entity !== "incident" ? ` · ${term("entity", a.entity)}` : ""),
      h("td", { class: "raw", dataset: { label: a.reason ? t("audit.col.reason") : "" } }, a.reason || ""),
      h("td", { class: "muted detail", dataset: { label: Object.keys(a.detail || {}).length ? t("audit.col.detail") : "" } }, ...detailPairs(a.detail, site)),
    ),
  );
}

function auditTrail(i, entries) {
  return h(
    "section",
    { class: "card", id: "audit" },
    h("h2", {}, t("audit.trail")),
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "cards audit" },
        h("thead", {}, h("tr", {}, ["when", "who", "role", "action", "reason", "detail"].map((c) => h("th", {}, t(`audit.col.${c}`))))),
        h("tbody", {}, auditRows(entries, i.site)),
      ),
    ),
  );
}

function head(i) {
  const where = t("incident.where", {
    kind: term("kind", i.kind) + (i.level ? ` · ${term("level", i.level)}` : ""),
    site: i.site,
    camera: i.camera || "–",
    ring: i.ring ? term("ring", i.ring) : "–",
    first: fmtTime(i.first_seen, i.site),
    last: fmtTime(i.last_seen, i.site),
  });
  const live = ["open", "confirmed"].includes(i.status);
  return h(
    "header",
    { class: `incident-head ${live ? i.colour || "" : "inactive"}` },
    colourBadge(i.colour),
    h("h1", {}, titleOf(i)),
    i.kind === "watchlist" ? decisionBadge(i) : badge(term("status", i.status), i.status),
    i.kind === "watchlist" && i.status === "closed" ? badge(term("status", "closed"), "closed") : null,
    live && i.escalating ? badge(t("badge.escalating"), "escalating") : null,
    i.late ? badge(t("badge.late"), "late") : null,
    h("p", { class: "muted" }, where),
  );
}

export async function incidentPage(id) {
  const page = h("section", { id: "incident-page" });
  const reload = async () => {
    const [i, stages] = await Promise.all([api(`/incidents/${id}`), api(`/dashboard/incidents/${id}/stages`)]);
    const entries = await api(`/dashboard/incidents/${id}/audit`);
    const parts = [
      head(i),
      i.kind === "watchlist" ? evidence(i, reload) : null,
      steps(i, stages, reload),
      trajectory(i),
      snapshots(i),
      mediaCard(i.id),
      routing(i, i.deliveries || []),
      auditTrail(i, entries),
    ];
    const typing = focusOf(page);
    page.replaceChildren(...parts.filter(Boolean));
    refocus(page, typing);
  };
  await reload();
  onLeave(runTimers(page));
  onIncident((alert) => {
    if (alert.incident_id === id) reload().catch(() => {});
  });
  return page;
}
