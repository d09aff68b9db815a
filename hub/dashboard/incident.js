// One incident: evidence (live crop beside the enrolled photo), confirm / reject, the
// trajectory on a three-ring diagram and as a camera timeline, snapshots, response steps
// as time-stamped buttons, and the incident's audit trail.

import { api, imageUrl } from "./api.js";
import { onIncident, onLeave } from "./app.js";
import { h, s, badge, colourBadge, fmtTime, fmtClock } from "./dom.js";
import { runTimers, timerChip } from "./timers.js";
import { mediaCard } from "./media.js"; // issue 14: clips, snapshots, case export

const RINGS = ["outer", "perimeter", "inner"];
const RADIUS = { outer: 130, perimeter: 85, inner: 40 };
const FILL = { yellow: "#f2c200", orange: "#f07d00", red: "#d40000" };

function img(path, alt, id) {
  const el = h("img", { alt, id, class: "face" });
  if (!path) return h("div", { class: "face missing", id }, `${alt}: none`);
  imageUrl(path).then((url) => {
    if (url) el.src = url;
    else el.replaceWith(h("div", { class: "face missing" }, `${alt}: not available`));
  });
  return el;
}

function evidence(i, reload) {
  const e = i.detail || {};
  const p = e.person || {};
  const result = h("p", { class: "error", id: "decision-error", role: "alert" });
  const reason = h("textarea", { id: "reject-reason", name: "reason", rows: 2, placeholder: "Why is this not the person? (required to reject)" });
  const note = h("input", { id: "confirm-note", name: "note", placeholder: "Note (optional)" });
  const act = async (path, body) => {
    try {
      await api(`/incidents/${i.id}/${path}`, { method: "POST", body });
      await reload();
    } catch (err) {
      result.textContent = err.message;
    }
  };
  const open = i.status === "open";
  return h(
    "section",
    { class: "card", id: "evidence" },
    h("h2", {}, "Match evidence"),
    h(
      "div",
      { class: "faces" },
      h("figure", {}, img(e.live_crop, "Live face crop", "live-crop"), h("figcaption", {}, `Live, ${e.camera || i.camera}`)),
      h("figure", {}, img(e.enrolled_photo, "Enrolled photo", "enrolled-photo"), h("figcaption", {}, "Enrolled")),
      h(
        "dl",
        {},
        h("dt", {}, "Similarity"), h("dd", { id: "similarity" }, e.similarity != null ? `${e.similarity.toFixed(3)} (threshold ${e.threshold?.toFixed(3)})` : "–"),
        h("dt", {}, "Person"), h("dd", {}, h("a", { href: `#/person/${p.id}` }, p.name || "–")),
        h("dt", {}, "Tier"), h("dd", {}, colourBadge(p.tier)),
        h("dt", {}, "Reason"), h("dd", {}, p.reason || "–"),
        h("dt", {}, "Case reference"), h("dd", { id: "case-ref" }, p.case_reference || "–"),
        h("dt", {}, "Station"), h("dd", {}, p.station || "–"),
      ),
    ),
    open
      ? h(
          "div",
          { class: "decide" },
          h("p", {}, "A match is a lead, not an identification: compare the faces, then decide."),
          h("div", { class: "row" }, note, h("button", { type: "button", id: "confirm", class: "good", onclick: () => act("confirm", { reason: note.value || null }) }, "Confirm match")),
          h("div", { class: "row" }, reason, h("button", { type: "button", id: "reject", class: "bad", onclick: () => act("reject", { reason: reason.value }) }, "Reject match")),
          result,
        )
      : h("p", { id: "decision" }, `${i.status === "rejected" ? "Rejected" : "Confirmed"} by ${i.decided_by} at ${fmtTime(i.decided_at)}${i.decision_reason ? `: “${i.decision_reason}”` : ""}`),
  );
}

function ringDiagram(points) {
  const svg = s("svg", { viewBox: "-150 -150 300 300", class: "rings", id: "ring-diagram", role: "img", "aria-label": "trajectory across the three rings" });
  for (const ring of RINGS) {
    svg.append(s("circle", { r: RADIUS[ring], class: `ring ${ring}` }));
    svg.append(s("text", { x: 0, y: -RADIUS[ring] + 14, class: "ring-label" }, ring));
  }
  const placed = points.map((p, n) => {
    const base = RADIUS[p.ring] ?? RADIUS.outer;
    const r = base - 20;
    const angle = Math.PI * (0.15 + (0.7 * n) / Math.max(1, points.length - 1)) + Math.PI;
    return { ...p, x: Math.cos(angle) * r, y: -Math.sin(angle) * r * -1 };
  });
  if (placed.length > 1) {
    svg.append(s("polyline", { points: placed.map((p) => `${p.x.toFixed(1)},${p.y.toFixed(1)}`).join(" "), class: "path" }));
  }
  placed.forEach((p, n) => {
    svg.append(s("circle", { cx: p.x.toFixed(1), cy: p.y.toFixed(1), r: 6, fill: FILL[p.colour] || "#666", class: "point" }, s("title", {}, `${fmtClock(p.at)} ${p.camera} (${p.ring})`)));
    if (n === placed.length - 1) svg.append(s("text", { x: p.x + 9, y: p.y + 4, class: "now" }, "latest"));
  });
  return svg;
}

function trajectory(i) {
  const campus = ["watchlist", "intrusion", "loitering"].includes(i.kind);
  const traj = (i.detail && i.detail.trajectory) || i.points.filter((p) => p.role !== "person").map((p) => ({ ...p, camera: p.camera_id }));
  return h(
    "section",
    { class: "card", id: "trajectory" },
    h("h2", {}, campus ? "Trajectory" : "Timeline"),
    h(
      "div",
      { class: "split" },
      campus ? ringDiagram(traj) : null,
      h(
        "table",
        { class: "timeline", id: "timeline" },
        h("thead", {}, h("tr", {}, ["Time", "Camera", "Ring", "Colour / level", "Similarity"].map((t) => h("th", {}, t)))),
        h(
          "tbody",
          {},
          traj.map((p) =>
            h(
              "tr",
              {},
              h("td", {}, fmtClock(p.at)),
              h("td", {}, p.camera),
              h("td", {}, p.ring || "–"),
              h("td", {}, p.level || p.colour || "–"),
              h("td", {}, p.similarity != null ? Number(p.similarity).toFixed(3) : "–"),
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
    h("h2", {}, "Snapshots"),
    h(
      "div",
      { class: "snaps" },
      events.map((p) => {
        const fig = h("figure", {}, h("figcaption", {}, `${fmtClock(p.at)} ${p.camera_id}${p.level ? ` – ${p.level}` : ""}`));
        imageUrl(`/api/v1/dashboard/events/${p.event_id}/snapshot`).then((url) => {
          if (url) fig.prepend(h("img", { src: url, alt: `snapshot ${p.event_id}`, class: "snap" }));
          else fig.remove();
        });
        return fig;
      }),
    ),
  );
}

function steps(i, stages, reload) {
  const error = h("p", { class: "error", role: "alert" });
  const active = ["open", "confirmed"].includes(i.status);
  const step = async (name) => {
    try {
      await api(`/incidents/${i.id}/steps/${name}`, { method: "POST", body: {} });
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  const close = async () => {
    try {
      await api(`/incidents/${i.id}/close`, { method: "POST", body: { reason: null } });
      await reload();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  return h(
    "section",
    { class: "card", id: "steps" },
    h("h2", {}, "Response"),
    h(
      "ol",
      { class: "steps" },
      stages.map((st) => {
        const decidedByMatch = i.kind === "watchlist" && st.name === "acknowledged";
        const doable = active && !st.done_at && !st.cancelled && !decidedByMatch;
        return h(
          "li",
          { dataset: { stage: st.name } },
          timerChip(st),
          st.due_at ? h("span", { class: "muted" }, ` due ${fmtClock(st.due_at)}`) : null,
          st.done_at ? h("span", { class: "muted" }, ` by ${st.done_by}`) : null,
          st.missed_at ? badge("escalated", "escalating") : null,
          doable ? h("button", { type: "button", class: "step", onclick: () => step(st.name) }, `Mark “${st.label}” done`) : null,
          decidedByMatch && !st.done_at && active ? h("span", { class: "muted" }, " (confirm or reject the match above)") : null,
        );
      }),
    ),
    active ? h("button", { type: "button", id: "close", onclick: close }, "Close incident") : null,
    error,
  );
}

function routing(deliveries) {
  const sent = deliveries.filter((d) => d.channel !== "sse");
  if (!sent.length) return null;
  return h(
    "section",
    { class: "card", id: "routing" },
    h("h2", {}, "Routed to"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["When", "Why", "Channel", "Recipient", "Status", "Attempts"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        sent.map((d) =>
          h(
            "tr",
            {},
            h("td", {}, fmtTime(d.created_at)),
            h("td", {}, d.reason),
            h("td", {}, d.channel),
            h("td", {}, d.recipient ? `${d.recipient_kind} ${d.recipient}` : d.target),
            h("td", {}, d.status, d.last_error ? h("span", { class: "muted" }, ` (${d.last_error})`) : null),
            h("td", {}, d.attempts),
          ),
        ),
      ),
    ),
  );
}

function auditTrail(entries) {
  return h(
    "section",
    { class: "card", id: "audit" },
    h("h2", {}, "Audit trail"),
    h(
      "table",
      {},
      h("thead", {}, h("tr", {}, ["When", "Who", "Role", "Action", "Reason", "Detail"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        entries.map((a) =>
          h("tr", {}, h("td", {}, fmtTime(a.at)), h("td", {}, a.actor), h("td", {}, a.role), h("td", {}, a.action), h("td", {}, a.reason || ""), h("td", { class: "muted" }, JSON.stringify(a.detail))),
        ),
      ),
    ),
  );
}

export async function incidentPage(id) {
  const page = h("section", { id: "incident-page" });
  const reload = async () => {
    const [i, stages] = await Promise.all([api(`/incidents/${id}`), api(`/dashboard/incidents/${id}/stages`)]);
    const entries = await api(`/dashboard/incidents/${id}/audit`);
    const parts = [
      h(
        "header",
        { class: `incident-head ${i.colour || ""}` },
        colourBadge(i.colour),
        h("h1", {}, i.title),
        badge(i.status, i.status),
        i.kind === "watchlist" ? badge(i.confirmed ? "confirmed" : i.status === "rejected" ? "rejected" : "UNCONFIRMED", i.confirmed ? "confirmed" : "unconfirmed") : null,
        i.escalating ? badge("escalating", "escalating") : null,
        i.late ? badge("late", "late") : null,
        h("p", { class: "muted" }, `${i.kind}${i.level ? ` (${i.level})` : ""} at ${i.site} – camera ${i.camera || "–"} – ring ${i.ring || "–"} – first seen ${fmtTime(i.first_seen)}, last seen ${fmtTime(i.last_seen)}`),
      ),
      i.kind === "watchlist" ? evidence(i, reload) : null,
      steps(i, stages, reload),
      trajectory(i),
      snapshots(i),
      mediaCard(i.id),
      routing(i.deliveries || []),
      auditTrail(entries),
    ];
    page.replaceChildren(...parts.filter(Boolean));
  };
  await reload();
  onLeave(runTimers(page));
  onIncident((alert) => {
    if (alert.incident_id === id) reload().catch(() => {});
  });
  return page;
}
