// Devices and cameras (health from the last heartbeat), and sheds (cameras, each bay's
// readings in words against the threshold it crossed, a chart of the climb, fire/smoke
// incidents with levels).

import { api } from "./api.js";
import { onIncident, onLeave, user } from "./app.js";
import { h, s, badge, fmtTime } from "./dom.js";
import { t, term, titleOf } from "./i18n.js";

function num(value, digits = 1, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function every(ms, fn) {
  const id = setInterval(() => fn().catch(() => {}), ms);
  onLeave(() => clearInterval(id));
}

function cell(key, ...children) {
  return h("td", { dataset: { label: key ? t(key) : "" } }, ...children);
}

function online(flag) {
  return badge(flag ? t("devices.online") : t("devices.offline"), flag ? "online" : "offline");
}

function deviceRows(d) {
  return [
    h(
      "tr",
      { class: "device", dataset: { id: d.id } },
      cell("devices.col.state", online(d.online)),
      cell("devices.col.device", h("strong", {}, d.id), ` (${d.site})`),
      cell("devices.col.agent", d.agent_version || "–"),
      cell("devices.col.heartbeat", fmtTime(d.last_seen_at, d.site)),
      cell("devices.col.outbox", d.outbox_depth ?? "–", d.outbox_dropped ? t("devices.dropped", { count: d.outbox_dropped }) : ""),
      cell("devices.col.uptime", d.uptime_s != null ? t("devices.seconds", { s: Math.round(d.uptime_s) }) : "–"),
      cell(null, ""),
      cell(null, ""),
    ),
    ...d.cameras.map((c) =>
      h(
        "tr",
        { class: "camera", dataset: { id: c.id } },
        cell("devices.col.state", online(c.online)),
        h("td", { class: "indent", dataset: { label: t("devices.col.device") } }, t("devices.camera", { id: c.id, role: term("camera_role", c.role) }), c.shed ? ` (${c.shed})` : ""),
        cell(null, ""),
        cell(null, ""),
        cell(null, ""),
        cell("devices.col.uptime", c.dropped_frames != null ? t("devices.camera_errors", { dropped: c.dropped_frames, reconnects: c.reconnects }) : ""),
        cell("devices.col.fps", num(c.fps, 1, " fps")),
        cell("devices.col.latency", num(c.latency_ms, 0, " ms")),
      ),
    ),
  ];
}

// The hub workers, from what /health reports (hub/workers.py workers_view); /health gives
// the list to admins, technicians and auditors only, others see a line saying so.
const WORKER_COLS = ["state", "name", "started", "heartbeat", "lag", "events_per_s"];

function workerCell(key, ...children) {
  return h("td", { dataset: { label: t(`workers.col.${key}`) } }, ...children);
}

function workerRow(w) {
  const ok = w.state === "ok";
  const lag = w.lag_s === null || w.lag_s === undefined ? t("workers.no_lag") : t("workers.lag", { s: num(w.lag_s, 1), queued: w.queued });
  return h(
    "tr",
    { class: "worker", dataset: { name: w.name, state: w.state } },
    workerCell("state", badge(ok ? t("workers.ok") : t("workers.stale"), ok ? "online" : "offline")),
    workerCell("name", h("strong", {}, w.name), " ", h("span", { class: "muted raw" }, w.instance)),
    workerCell("started", fmtTime(w.started_at)),
    workerCell("heartbeat", fmtTime(w.last_heartbeat), " ", h("span", { class: "muted" }, t("workers.ago", { s: num(w.heartbeat_age_s, 0) }))),
    workerCell("lag", lag),
    workerCell("events_per_s", t("workers.rate", { rate: num(w.events_per_s, 1), events: w.events })),
  );
}

function workersView() {
  const body = h("tbody", { id: "workers" });
  const note = h("p", { class: "muted", id: "workers-note" });
  const load = async () => {
    const health = await api("/health");
    const workers = health.workers;
    if (!Array.isArray(workers)) {
      note.textContent = t("workers.hidden");
      body.replaceChildren();
    } else {
      note.textContent = workers.length ? "" : t("workers.none");
      body.replaceChildren(...workers.map(workerRow));
    }
  };
  const table = h("table", { class: "workers cards" }, h("thead", {}, h("tr", {}, WORKER_COLS.map((c) => h("th", {}, t(`workers.col.${c}`))))), body);
  return { load, node: h("section", { class: "workers-view" }, h("h2", {}, t("workers.title")), note, h("div", { class: "table-wrap" }, table)) };
}

// Logins shut out for flooding malformed messages (hub/quarantine.py): admins, technicians
// and auditors see them; admins and technicians may lift one, with a reason (audited).
/** "invalid 340, bad_topic 139" (hub/quarantine.py) in words: 格式不符 340 条、主题错误 139 条. */
function reasonWords(text) {
  return (text || "")
    .split(", ")
    .map((part) => {
      const [reason, count] = part.split(" ");
      return count === undefined ? part : t("quarantine.reason_count", { reason: term("dead", reason), count });
    })
    .join(t("list.sep"));
}

function quarantineItem(q, mayLift, reload) {
  const why = h("input", { type: "text", class: "lift-reason", maxlength: 500, placeholder: t("quarantine.reason_placeholder") });
  const error = h("span", { class: "error", role: "alert" });
  const lift = async () => {
    try {
      await api(`/quarantines/${q.id}/lift`, { method: "POST", body: { reason: why.value || null } });
      why.value = "";
      why.blur();
      await reload();
    } catch (e) {
      error.textContent = e.message;
    }
  };
  return h(
    "li",
    { class: "quarantine", dataset: { id: q.id, login: q.login } },
    badge(t("quarantine.badge"), "offline"),
    " ",
    t("quarantine.line", { device: q.device_id, site: q.site_id, count: q.bad_count, window: q.window_s, reasons: reasonWords(q.reasons), until: fmtTime(q.until, q.site_id) }),
    q.broker_ban ? "" : h("span", { class: "muted" }, t("quarantine.not_banned")),
    mayLift ? h("div", { class: "row" }, why, h("button", { type: "button", class: "lift", onclick: lift }, t("quarantine.lift")), error) : "",
  );
}

function quarantinesView() {
  const list = h("ul", { id: "quarantines" });
  const note = h("p", { class: "muted", id: "quarantines-note" });
  const mayLift = ["admin", "technician"].includes(user()?.role);
  const load = async () => {
    let rows;
    try {
      rows = await api("/quarantines?active=true");
    } catch (e) {
      if (e.status !== 403) throw e;
      note.textContent = t("quarantine.hidden");
      list.replaceChildren();
      return;
    }
    const typing = [...list.querySelectorAll(".lift-reason")].some((i) => i.value || i === document.activeElement);
    if (typing) return; // a reason is being written: keep the form until it is sent
    note.textContent = rows.length ? "" : t("quarantine.none");
    list.replaceChildren(...rows.map((q) => quarantineItem(q, mayLift, load)));
  };
  return { load, node: h("section", { class: "quarantines-view" }, h("h2", {}, t("quarantine.title")), note, list) };
}

export async function devicesPage() {
  const body = h("tbody", { id: "devices" });
  const workers = workersView();
  const quarantines = quarantinesView();
  const load = async () => {
    const devices = await api("/dashboard/devices");
    body.replaceChildren(...devices.flatMap(deviceRows));
  };
  await Promise.all([load(), workers.load(), quarantines.load()]);
  every(5000, load);
  every(5000, workers.load);
  every(5000, quarantines.load);
  const cols = ["state", "device", "agent", "heartbeat", "outbox", "uptime", "fps", "latency"];
  return h(
    "section",
    {},
    h("h1", {}, t("devices.title")),
    h("div", { class: "table-wrap" }, h("table", { class: "devices cards" }, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(`devices.col.${c}`))))), body)),
    quarantines.node,
    workers.node,
  );
}

/** An inline SVG line chart of one series (e.g. a bay's temperature), with the threshold. */
export function sparkline(values, { width = 260, height = 60, label = "", limit = null } = {}) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
  if (values.length < 2) return svg;
  const lo = Math.min(...values, limit ?? Infinity);
  const hi = Math.max(...values, limit ?? -Infinity);
  const span = hi - lo || 1;
  const y = (v) => (height - 4 - ((v - lo) / span) * (height - 8)).toFixed(1);
  const pts = values.map((v, n) => `${((n / (values.length - 1)) * (width - 2) + 1).toFixed(1)},${y(v)}`);
  if (limit !== null) svg.append(s("line", { x1: 0, x2: width, y1: y(limit), y2: y(limit), class: "limit" }));
  svg.append(s("polyline", { points: pts.join(" "), class: "line" }));
  svg.append(s("text", { x: 2, y: 10, class: "axis" }, hi.toFixed(1)));
  svg.append(s("text", { x: 2, y: height - 1, class: "axis" }, lo.toFixed(1)));
  return svg;
}

/** The limit a bay is judged by: what its edge said in an alert, else the default. */
function limitsFor(shed, name) {
  const limits = { ...shed.thresholds };
  for (const i of [...shed.incidents].reverse()) {
    for (const a of i.anomalies || []) if (a.bay === name) limits[a.what] = a.limit;
  }
  return limits;
}

function bayWords(name, last, limits) {
  const out = [];
  if (last.temperature_c > limits.temperature) out.push(t("bay.too_hot", { bay: name, value: num(last.temperature_c, 1), limit: num(limits.temperature, 0) }));
  if (last.current_a > limits.current) out.push(t("bay.overcurrent", { bay: name, value: num(last.current_a, 1), limit: num(limits.current, 0) }));
  if (last.current_a > 0.5 && last.voltage_v < limits.voltage) out.push(t("bay.low_voltage", { bay: name, value: num(last.voltage_v, 1), limit: num(limits.voltage, 0) }));
  return out;
}

function bay(shed, name, series) {
  const last = series[series.length - 1] || {};
  const limits = limitsFor(shed, name);
  const alarms = bayWords(name, last, limits);
  const hot = alarms.length > 0;
  const since = series.length ? fmtTime(series[0].at, shed.site) : "–";
  return h(
    "div",
    { class: `bay ${hot ? "hot" : ""}`.trim(), dataset: { bay: name } },
    h("strong", {}, t("bay.name", { bay: name }), hot ? badge(t("bay.alarm"), "lvl-alarm") : badge(t("bay.normal"), "online")),
    h("span", { class: "reading" }, t("bay.reading", { current: num(last.current_a, 2), voltage: num(last.voltage_v, 1), temperature: num(last.temperature_c, 1) })),
    hot
      ? alarms.map((a) => h("span", { class: "bay-alarm" }, a))
      : h("span", { class: "bay-ok" }, t("bay.below", { limit: num(limits.temperature, 0) })),
    sparkline(series.map((r) => r.temperature_c), { label: t("bay.chart", { bay: name }), limit: limits.temperature }),
    h("span", { class: "muted" }, t("bay.series", { count: series.length, since, last: fmtTime(last.at, shed.site) })),
  );
}

function shedIncidents(shed) {
  if (!shed.incidents.length) return h("p", { class: "muted" }, t("sheds.none"));
  return h(
    "ul",
    { class: "shed-incidents" },
    shed.incidents.map((i) =>
      h(
        "li",
        {},
        badge(term("level", i.level), `lvl-${i.level}`),
        " ",
        h("a", { href: `#/incident/${i.id}` }, titleOf(i)),
        " ",
        t("sheds.incident_line", {
          status: term("status", i.status),
          first: fmtTime(i.first_seen, shed.site),
          last: fmtTime(i.last_seen, shed.site),
          levels: [...new Set(i.levels)].map((l) => term("level", l)).join(t("list.sep")),
        }),
      ),
    ),
  );
}

export async function shedsPage() {
  const list = h("div", { id: "sheds" });
  const load = async () => {
    const sheds = await api("/dashboard/sheds");
    list.replaceChildren(
      ...(sheds.length ? [] : [h("p", { class: "muted" }, t("sheds.empty"))]),
      ...sheds.map((shed) =>
        h(
          "section",
          { class: "card shed", dataset: { shed: shed.shed } },
          h("h2", {}, t("sheds.heading", { shed: shed.shed, site: shed.site })),
          h("p", {}, t("sheds.cameras", { cameras: shed.cameras.join(t("list.sep")) || "–" })),
          h("div", { class: "bays" }, Object.entries(shed.bays).map(([name, series]) => bay(shed, name, series))),
          h("h3", {}, t("sheds.incidents")),
          shedIncidents(shed),
        ),
      ),
    );
  };
  await load();
  every(5000, load);
  onIncident((alert) => {
    if (alert.kind === "shed") load().catch(() => {});
  });
  return h("section", {}, h("h1", {}, t("sheds.title")), list);
}
