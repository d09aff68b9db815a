// Devices and cameras (health from the last heartbeat), and sheds (cameras, the latest
// charger readings of each bay with a small chart, fire/smoke incidents with levels).

import { api } from "./api.js";
import { onIncident, onLeave } from "./app.js";
import { h, s, badge, fmtTime } from "./dom.js";

function num(value, digits = 1, unit = "") {
  return value === null || value === undefined ? "–" : `${Number(value).toFixed(digits)}${unit}`;
}

function every(ms, fn) {
  const id = setInterval(() => fn().catch(() => {}), ms);
  onLeave(() => clearInterval(id));
}

export async function devicesPage() {
  const body = h("tbody", { id: "devices" });
  const load = async () => {
    const devices = await api("/dashboard/devices");
    body.replaceChildren(
      ...devices.flatMap((d) => [
        h(
          "tr",
          { class: "device", dataset: { id: d.id } },
          h("td", {}, badge(d.online ? "online" : "offline", d.online ? "online" : "offline")),
          h("td", {}, h("strong", {}, d.id), ` (${d.site})`),
          h("td", {}, d.agent_version || "–"),
          h("td", {}, fmtTime(d.last_seen_at)),
          h("td", {}, d.outbox_depth ?? "–", d.outbox_dropped ? ` (${d.outbox_dropped} dropped)` : ""),
          h("td", {}, d.uptime_s != null ? `${Math.round(d.uptime_s)} s` : "–"),
          h("td", {}, ""),
          h("td", {}, ""),
        ),
        ...d.cameras.map((c) =>
          h(
            "tr",
            { class: "camera", dataset: { id: c.id } },
            h("td", {}, badge(c.online ? "online" : "offline", c.online ? "online" : "offline")),
            h("td", { class: "indent" }, `camera ${c.id} – ${c.role}${c.shed ? ` (${c.shed})` : ""}`),
            h("td", {}, ""),
            h("td", {}, ""),
            h("td", {}, ""),
            h("td", {}, c.dropped_frames != null ? `${c.dropped_frames} dropped, ${c.reconnects} reconnects` : ""),
            h("td", {}, num(c.fps, 1, " fps")),
            h("td", {}, num(c.latency_ms, 0, " ms")),
          ),
        ),
      ]),
    );
  };
  await load();
  every(5000, load);
  return h(
    "section",
    {},
    h("h1", {}, "Devices and cameras"),
    h(
      "table",
      { class: "devices" },
      h("thead", {}, h("tr", {}, ["State", "Device / camera", "Agent", "Last heartbeat", "Outbox", "Uptime / errors", "FPS", "Latency"].map((t) => h("th", {}, t)))),
      body,
    ),
  );
}

/** An inline SVG line chart of one series (e.g. a bay's temperature). */
export function sparkline(values, { width = 220, height = 48, label = "" } = {}) {
  const svg = s("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": label });
  if (values.length < 2) return svg;
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  const span = hi - lo || 1;
  const pts = values.map((v, n) => `${((n / (values.length - 1)) * (width - 2) + 1).toFixed(1)},${(height - 4 - ((v - lo) / span) * (height - 8)).toFixed(1)}`);
  svg.append(s("polyline", { points: pts.join(" "), class: "line" }));
  svg.append(s("text", { x: 2, y: 10, class: "axis" }, hi.toFixed(1)));
  svg.append(s("text", { x: 2, y: height - 1, class: "axis" }, lo.toFixed(1)));
  return svg;
}

function bay(name, series) {
  const last = series[series.length - 1] || {};
  const hot = last.temperature_c >= 60;
  return h(
    "div",
    { class: `bay ${hot ? "hot" : ""}`, dataset: { bay: name } },
    h("strong", {}, `Bay ${name}`),
    h("span", { class: "reading" }, `${num(last.current_a, 2, " A")} · ${num(last.voltage_v, 1, " V")} · ${num(last.temperature_c, 1, " °C")}`),
    sparkline(series.map((r) => r.temperature_c), { label: `bay ${name} temperature` }),
    h("span", { class: "muted" }, `temperature, last ${series.length} readings (${fmtTime(last.at)})`),
  );
}

export async function shedsPage() {
  const list = h("div", { id: "sheds" });
  const load = async () => {
    const sheds = await api("/dashboard/sheds");
    list.replaceChildren(
      ...(sheds.length ? [] : [h("p", { class: "muted" }, "No sheds in your sites.")]),
      ...sheds.map((shed) =>
        h(
          "section",
          { class: "card shed", dataset: { shed: shed.shed } },
          h("h2", {}, `Shed ${shed.shed} – ${shed.site}`),
          h("p", {}, `Cameras: ${shed.cameras.join(", ") || "none"}`),
          h("div", { class: "bays" }, Object.entries(shed.bays).map(([name, series]) => bay(name, series))),
          h("h3", {}, "Fire / smoke incidents"),
          shed.incidents.length
            ? h(
                "ul",
                { class: "shed-incidents" },
                shed.incidents.map((i) =>
                  h(
                    "li",
                    {},
                    badge(i.level, `lvl-${i.level}`),
                    " ",
                    h("a", { href: `#/incident/${i.id}` }, i.title),
                    ` – ${i.status}, ${fmtTime(i.first_seen)} → ${fmtTime(i.last_seen)}; levels seen: ${[...new Set(i.levels)].join(", ")}`,
                  ),
                ),
              )
            : h("p", { class: "muted" }, "None."),
        ),
      ),
    );
  };
  await load();
  every(5000, load);
  onIncident((alert) => {
    if (alert.kind === "shed") load().catch(() => {});
  });
  return h("section", {}, h("h1", {}, "Sheds"), list);
}
