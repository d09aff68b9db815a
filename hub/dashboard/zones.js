// The zone editor: a fresh snapshot from the device (privacy masks applied on the box), an
// SVG overlay in normalised coordinates to draw and edit zone polygons, directed lines and
// privacy masks, and a save that the hub validates with the contract's CameraZones and
// pushes to the device. The status shows pending until the device answers.

import { api, auth, imageUrl } from "./api.js";
import { h, s, fmtTime, setSiteZones } from "./dom.js";
import { language, rememberedLanguage, setLanguage, t, term } from "./i18n.js";

const ROLES = ["outer", "perimeter", "inner", "shed"];
const RINGS = ["outer", "perimeter", "inner"];
const DIRECTIONS = ["both", "left_to_right", "right_to_left"];
const COLOURS = { outer: "#f2c200", perimeter: "#f07d00", inner: "#e00000", shed: "#0078e6" };
const LINE_COLOUR = "#ff00ff";
const MASK_COLOUR = "#808080";
const main = document.getElementById("main");

const ed = {
  site: null,
  camera: null,
  size: { w: 640, h: 360 },
  config: emptyConfig(null),
  saved: false, // the hub has zones saved for this camera
  tool: "select",
  draft: [],
  drag: null,
  poll: null,
};

function roleName(role) {
  return RINGS.includes(role) ? term("ring", role) : t("zones.shed_area");
}

function emptyConfig(defaultRing) {
  return { default_ring: defaultRing || "outer", zones: [], lines: [], masks: [], schedules: {} };
}

function round(v) {
  return Math.round(Math.min(1, Math.max(0, v)) * 10000) / 10000;
}

function nextId(prefix) {
  const used = new Set([...ed.config.zones, ...ed.config.lines, ...ed.config.masks].map((i) => i.id));
  let n = 1;
  while (used.has(`${prefix}-${n}`)) n += 1;
  return `${prefix}-${n}`;
}

// -- drawing ---------------------------------------------------------------------------

function px([x, y]) {
  return [x * ed.size.w, y * ed.size.h];
}

function pointsAttr(points) {
  return points.map((p) => px(p).join(",")).join(" ");
}

function handle(point, onMove) {
  const [cx, cy] = px(point);
  const r = Math.max(ed.size.w, ed.size.h) / 150;
  const c = s("circle", { cx, cy, r, class: "handle", fill: "#fff", stroke: "#000", "stroke-width": r / 3 });
  c.addEventListener("pointerdown", (e) => {
    if (ed.tool !== "select") return;
    e.stopPropagation();
    ed.drag = onMove;
  });
  return c;
}

function label(text, point, colour) {
  const [x, y] = px(point);
  const size = Math.max(ed.size.w, ed.size.h) / 50;
  return s("text", { x: x + size / 3, y: y + size, fill: colour, "font-size": size, "font-family": "sans-serif" }, text);
}

function drawShapes(svg) {
  const stroke = Math.max(ed.size.w, ed.size.h) / 320;
  for (const z of ed.config.zones) {
    const colour = COLOURS[z.role] || "#fff";
    svg.append(
      s("polygon", { class: "zone-shape", "data-id": z.id, points: pointsAttr(z.polygon), fill: colour, "fill-opacity": 0.2, stroke: colour, "stroke-width": stroke }),
      label(`${z.id} (${roleName(z.role)})`, z.polygon[0], colour),
      ...z.polygon.map((p, i) => handle(p, (q) => (z.polygon[i] = q))),
    );
  }
  for (const m of ed.config.masks) {
    svg.append(
      s("polygon", { class: "mask-shape", "data-id": m.id, points: pointsAttr(m.polygon), fill: MASK_COLOUR, "fill-opacity": 0.5, stroke: MASK_COLOUR, "stroke-width": stroke }),
      label(`${m.id} (mask)`, m.polygon[0], "#ddd"),
      ...m.polygon.map((p, i) => handle(p, (q) => (m.polygon[i] = q))),
    );
  }
  for (const l of ed.config.lines) {
    const [ax, ay] = px(l.a);
    const [bx, by] = px(l.b);
    svg.append(
      s("line", { class: "line-shape", "data-id": l.id, x1: ax, y1: ay, x2: bx, y2: by, stroke: LINE_COLOUR, "stroke-width": stroke * 1.5, "marker-end": "url(#arrow)" }),
      arrow(l, stroke),
      label(`${l.id} (${t(`zones.direction.${l.direction}`)})`, l.a, LINE_COLOUR),
      handle(l.a, (q) => (l.a = q)),
      handle(l.b, (q) => (l.b = q)),
    );
  }
}

// The counted side: an arrow from the middle of the line towards its right (as the edge draws it).
function arrow(line, stroke) {
  const [ax, ay] = px(line.a);
  const [bx, by] = px(line.b);
  const [mx, my] = [(ax + bx) / 2, (ay + by) / 2];
  const len = Math.max(Math.hypot(bx - ax, by - ay), 1);
  const k = Math.max(ed.size.w, ed.size.h) / 25 / len;
  const [tx, ty] = [mx - (by - ay) * k, my + (bx - ax) * k];
  return s("line", { x1: mx, y1: my, x2: tx, y2: ty, stroke: LINE_COLOUR, "stroke-width": stroke, "marker-end": "url(#arrow)" });
}

function drawDraft(svg) {
  if (!ed.draft.length) return;
  const stroke = Math.max(ed.size.w, ed.size.h) / 300;
  svg.append(
    s("polyline", { id: "draft", points: pointsAttr(ed.draft), fill: "none", stroke: "#00e0ff", "stroke-width": stroke, "stroke-dasharray": `${stroke * 3}` }),
    ...ed.draft.map((p) => {
      const [cx, cy] = px(p);
      return s("circle", { cx, cy, r: stroke * 2, fill: "#00e0ff" });
    }),
  );
}

function render() {
  const svg = document.getElementById("overlay");
  if (!svg) return;
  svg.setAttribute("viewBox", `0 0 ${ed.size.w} ${ed.size.h}`);
  svg.replaceChildren(
    s("defs", {}, s("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 5, refY: 5, markerWidth: 4, markerHeight: 4, orient: "auto-start-reverse" }, s("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: LINE_COLOUR }))),
  );
  drawShapes(svg);
  drawDraft(svg);
  document.getElementById("draft-info").textContent = ed.draft.length
    ? t("zones.draft_points", { count: ed.draft.length })
    : "";
}

function at(e) {
  const box = document.getElementById("overlay").getBoundingClientRect();
  return [round((e.clientX - box.left) / box.width), round((e.clientY - box.top) / box.height)];
}

function onStageClick(e) {
  if (ed.tool === "select") return;
  ed.draft.push(at(e));
  if (ed.tool === "line" && ed.draft.length === 2) finishShape();
  render();
}

function finishShape() {
  const pts = ed.draft;
  ed.draft = [];
  if (ed.tool === "zone" && pts.length) {
    const role = document.getElementById("new-role").value;
    ed.config.zones.push({ id: nextId(role), role, polygon: pts, schedule: null, loiter_s: null, intrusion_when_closed: false, debounce_frames: 3 });
  } else if (ed.tool === "mask" && pts.length) {
    ed.config.masks.push({ id: nextId("mask"), polygon: pts });
  } else if (ed.tool === "line" && pts.length === 2) {
    ed.config.lines.push({ id: nextId("line"), a: pts[0], b: pts[1], direction: "both", schedule: null });
  }
  render();
  renderItems();
}

// -- the list of zones, lines and masks ------------------------------------------------

function select(options, value, attrs, onchange) {
  return h(
    "select",
    { ...attrs, onchange: (e) => onchange(e.target.value) },
    options.map(([v, text]) => h("option", { value: v, selected: v === (value ?? "") }, text)),
  );
}

function scheduleOptions() {
  return [["", t("zones.schedule_always")], ...Object.keys(ed.config.schedules).map((n) => [n, n])];
}

function idInput(item, cls) {
  return h("input", { class: cls, value: item.id, oninput: (e) => { item.id = e.target.value; render(); } });
}

function remove(list, item) {
  return h("button", { type: "button", class: "delete", onclick: () => { list.splice(list.indexOf(item), 1); render(); renderItems(); } }, t("zones.delete"));
}

function zoneRow(z) {
  return h(
    "tr",
    { class: "zone-row", dataset: { id: z.id } },
    h("td", {}, t("zones.item_zone")),
    h("td", {}, idInput(z, "zone-id")),
    h("td", {}, select(ROLES.map((r) => [r, roleName(r)]), z.role, { class: "zone-role" }, (v) => { z.role = v; render(); })),
    h("td", {}, select(scheduleOptions(), z.schedule, { class: "zone-schedule" }, (v) => (z.schedule = v || null))),
    h("td", {}, h("label", { title: t("zones.loiter_title") }, t("zones.loiter_s"), h("input", { type: "number", min: 1, value: z.loiter_s ?? "", oninput: (e) => (z.loiter_s = e.target.value ? Number(e.target.value) : null) }))),
    h("td", {}, h("label", {}, h("input", { type: "checkbox", checked: z.intrusion_when_closed, onchange: (e) => (z.intrusion_when_closed = e.target.checked) }), ` ${t("zones.intrusion_closed")}`)),
    h("td", {}, t("zones.points", { count: z.polygon.length }), " ", remove(ed.config.zones, z)),
  );
}

function lineRow(l) {
  return h(
    "tr",
    { class: "line-row", dataset: { id: l.id } },
    h("td", {}, t("zones.item_line")),
    h("td", {}, idInput(l, "line-id")),
    h("td", {}, select(DIRECTIONS.map((d) => [d, t(`zones.direction.${d}`)]), l.direction, { class: "line-direction" }, (v) => { l.direction = v; render(); })),
    h("td", {}, select(scheduleOptions(), l.schedule, { class: "line-schedule" }, (v) => (l.schedule = v || null))),
    h("td", { colspan: 2 }, t("zones.line_hint")),
    h("td", {}, remove(ed.config.lines, l)),
  );
}

function maskRow(m) {
  return h(
    "tr",
    { class: "mask-row", dataset: { id: m.id } },
    h("td", {}, t("zones.item_mask")),
    h("td", {}, idInput(m, "mask-id")),
    h("td", { colspan: 4 }, t("zones.mask_hint")),
    h("td", {}, t("zones.points", { count: m.polygon.length }), " ", remove(ed.config.masks, m)),
  );
}

function renderItems() {
  const box = document.getElementById("items");
  const rows = [...ed.config.zones.map(zoneRow), ...ed.config.lines.map(lineRow), ...ed.config.masks.map(maskRow)];
  box.replaceChildren(rows.length ? h("table", {}, h("tbody", {}, rows)) : h("p", { class: "muted" }, t("zones.nothing")));
  document.getElementById("default-ring").value = ed.config.default_ring;
  document.getElementById("schedules").value = JSON.stringify(ed.config.schedules, null, 1);
}

// -- status of the latest push ---------------------------------------------------------

function showStatus(cfg) {
  const el = document.getElementById("zone-status");
  const online = cfg.device_online === false ? ` ${t("zones.offline_note")}` : "";
  el.dataset.state = cfg.state || "none";
  if (!cfg.state) {
    el.textContent = t("zones.status_none");
  } else if (cfg.state === "pending") {
    el.textContent = t("zones.status_pending", { version: cfg.version, who: cfg.updated_by, device: cfg.device, pushes: cfg.pushes }) + online;
  } else if (cfg.state === "accepted") {
    el.textContent = t("zones.status_accepted", { version: cfg.version, at: fmtTime(cfg.answered_at, ed.site) });
  } else {
    const kept = cfg.applied_version ? t("zones.kept_version", { version: cfg.applied_version }) : t("zones.kept_local");
    el.textContent = t("zones.status_rejected", { version: cfg.version, reason: cfg.reason || t("zones.no_reason"), kept });
  }
  const picked = document.querySelector(`#camera option[value="${ed.site}/${ed.camera}"]`);
  if (picked) picked.textContent = `${ed.site} / ${ed.camera} (${t(`zones.state.${cfg.state || "none"}`)})`;
  document.getElementById("device-state").textContent =
    cfg.device_online === null ? t("zones.device_unknown") : cfg.device_online ? t("devices.online") : t("devices.offline");
}

function watch() {
  clearInterval(ed.poll);
  ed.poll = setInterval(async () => {
    try {
      const cfg = await api(`/zones/${ed.site}/${ed.camera}`);
      showStatus(cfg);
      if (cfg.state !== "pending") {
        clearInterval(ed.poll);
        snapshot(); // a fresh frame, and what the camera runs now
      }
    } catch {
      /* keep polling */
    }
  }, 1000);
}

function showErrors(message, errors) {
  const list = document.getElementById("zone-errors");
  list.replaceChildren(...(errors || []).map((e) => h("li", {}, `${e.path}: ${e.message}`)));
  if (!errors || !errors.length) list.replaceChildren(h("li", {}, message));
}

function body() {
  let schedules;
  try {
    schedules = JSON.parse(document.getElementById("schedules").value || "{}");
  } catch (err) {
    throw { message: t("zones.bad_schedules", { error: err.message }), errors: [{ path: "schedules", message: t("zones.bad_json", { error: err.message }) }] };
  }
  return { ...ed.config, default_ring: document.getElementById("default-ring").value, schedules };
}

async function save() {
  const status = document.getElementById("zone-status");
  document.getElementById("zone-errors").replaceChildren();
  try {
    const cfg = await api(`/zones/${ed.site}/${ed.camera}`, { method: "PUT", body: body() });
    ed.saved = true;
    ed.config = { ...emptyConfig(null), ...structuredClone(cfg.zones) };
    renderItems();
    render();
    showStatus(cfg);
    watch();
  } catch (err) {
    const detail = err.detail || err;
    status.dataset.state = "invalid";
    status.textContent = t("zones.not_saved", { error: err.message || detail.message });
    showErrors(detail.message || err.message, detail.errors);
  }
}

// -- bootstrap from the edge's site file -----------------------------------------------

async function loadSiteFile(e) {
  const file = e.target.files[0];
  const msg = document.getElementById("site-file-msg");
  if (!file) return;
  try {
    const zones = await api(`/zones/${ed.site}/${ed.camera}/from-site-file`, { method: "POST", body: { yaml: await file.text() } });
    ed.config = { ...emptyConfig(null), ...zones };
    ed.draft = [];
    renderItems();
    render();
    msg.className = "ok";
    msg.textContent = t("zones.loaded", { zones: zones.zones.length, lines: zones.lines.length, masks: zones.masks.length, file: file.name });
  } catch (err) {
    msg.className = "error";
    msg.textContent = t("zones.not_loaded", { error: err.message });
  }
}

// -- snapshot and preview --------------------------------------------------------------

async function snapshot() {
  const msg = document.getElementById("snap-msg");
  msg.textContent = t("zones.asking");
  try {
    const shot = await api(`/zones/${ed.site}/${ed.camera}/snapshot`, { method: "POST" });
    ed.size = { w: shot.width, h: shot.height };
    const img = document.getElementById("snapshot");
    img.src = `data:image/jpeg;base64,${shot.jpeg}`;
    img.dataset.loaded = "yes";
    msg.textContent = t("zones.snapshot", { w: shot.width, h: shot.height, at: fmtTime(shot.taken_at, ed.site) });
    render();
    showRunning(shot);
    refreshPreview();
  } catch (err) {
    msg.textContent = t("zones.no_snapshot", { error: err.message });
  }
}

// What the camera runs now (its device reports it with each snapshot): loaded into the
// editor when the hub has nothing saved and nothing was drawn yet, else compared.
function showRunning(shot) {
  const el = document.getElementById("running-msg");
  const z = shot.running_zones;
  if (!el) return;
  if (!z) {
    el.dataset.state = "unknown";
    el.textContent = t("zones.running_unknown");
    return;
  }
  const counts = { zones: z.zones.length, lines: z.lines.length, masks: z.masks.length, origin: t(`zones.origin.${shot.running_origin || "unknown"}`) };
  if (!ed.saved) {
    const c = ed.config;
    if (!ed.draft.length && !c.zones.length && !c.lines.length && !c.masks.length) {
      ed.config = { ...emptyConfig(null), ...structuredClone(z) };
      renderItems();
      render();
    }
    el.dataset.state = "running";
    el.textContent = t("zones.running_loaded", counts);
  } else if (shot.running_matches) {
    el.dataset.state = "same";
    el.textContent = t("zones.running_same", counts);
  } else {
    el.dataset.state = "differs";
    el.textContent = t("zones.running_differs", counts);
  }
}

async function refreshPreview() {
  const url = await imageUrl(`/api/v1/zones/${ed.site}/${ed.camera}/preview.jpg?t=${Date.now()}`);
  const img = document.getElementById("preview");
  if (url && img) {
    img.src = url;
    img.hidden = false;
  }
}

// -- the page --------------------------------------------------------------------------

function setTool(tool) {
  ed.tool = tool;
  ed.draft = [];
  for (const b of document.querySelectorAll(".tools button[data-tool]")) {
    b.setAttribute("aria-pressed", String(b.dataset.tool === tool));
  }
  render();
}

function toolbar() {
  const tool = (name, text) => h("button", { type: "button", id: `tool-${name}`, dataset: { tool: name }, "aria-pressed": "false", onclick: () => setTool(name) }, text);
  return h(
    "div",
    { class: "tools" },
    tool("select", t("zones.tool.select")),
    tool("zone", t("zones.tool.zone")),
    select(ROLES.map((r) => [r, roleName(r)]), "inner", { id: "new-role", title: t("zones.new_role") }, () => {}),
    tool("line", t("zones.tool.line")),
    tool("mask", t("zones.tool.mask")),
    h("button", { type: "button", id: "finish", onclick: finishShape }, t("zones.finish")),
    h("button", { type: "button", id: "cancel", onclick: () => { ed.draft = []; render(); } }, t("zones.cancel")),
  );
}

function stage() {
  const svg = s("svg", { id: "overlay", viewBox: `0 0 ${ed.size.w} ${ed.size.h}`, preserveAspectRatio: "none" });
  svg.addEventListener("click", onStageClick);
  svg.addEventListener("dblclick", (e) => { e.preventDefault(); if (ed.draft.length) { ed.draft.pop(); finishShape(); } });
  svg.addEventListener("pointermove", (e) => { if (ed.drag) { ed.drag(at(e)); render(); } });
  const stop = () => { if (ed.drag) { ed.drag = null; renderItems(); } };
  svg.addEventListener("pointerup", stop);
  svg.addEventListener("pointerleave", stop);
  const img = h("img", { id: "snapshot", alt: t("zones.snapshot_alt"), src: blank() });
  return h("div", { class: "stage" }, img, svg);
}

function blank() {
  const c = document.createElement("canvas");
  c.width = ed.size.w;
  c.height = ed.size.h;
  return c.toDataURL("image/png");
}

function editor(cfg, cameras) {
  return h(
    "section",
    {},
    h("h1", {}, t("zones.heading", { camera: cfg.camera }), h("span", { class: "muted" }, ` ${t("zones.where", { site: cfg.site, device: cfg.device })} `, h("span", { id: "device-state" }, "…"))),
    h("div", { class: "row" }, h("label", {}, `${t("zones.camera")} `, cameraPicker(cameras)), h("button", { type: "button", id: "snapshot-btn", onclick: snapshot }, t("zones.fresh_snapshot")), h("span", { id: "snap-msg", class: "muted" })),
    h(
      "div",
      { class: "zone-layout" },
      h("div", {}, toolbar(), stage(), h("p", { id: "draft-info", class: "muted" }, ""), h("h2", {}, t("zones.as_edge")), h("img", { id: "preview", hidden: true, alt: t("zones.preview_alt") })),
      h(
        "div",
        {},
        h("div", { class: "card" }, h("h2", {}, t("zones.push_status")), h("p", { id: "zone-status", "data-state": "none", role: "status" }), h("p", { id: "running-msg", "data-state": "unknown" }), h("ul", { id: "zone-errors", role: "alert" }),
          h("div", { class: "row" }, h("button", { type: "button", id: "save", class: "good", onclick: save }, t("zones.save")))),
        h("div", { class: "card" }, h("h2", {}, t("zones.items")), h("div", { id: "items" })),
        h("div", { class: "card" }, h("h2", {}, t("zones.from_file")),
          h("label", {}, t("zones.file_label"), h("input", { type: "file", id: "site-file", accept: ".yaml,.yml,text/yaml", onchange: loadSiteFile })),
          h("p", { id: "site-file-msg", class: "muted" })),
        h("div", { class: "card" }, h("h2", {}, t("zones.camera_settings")),
          h("label", {}, t("zones.default_ring"), select(RINGS.map((r) => [r, term("ring", r)]), ed.config.default_ring, { id: "default-ring" }, (v) => (ed.config.default_ring = v))),
          h("label", {}, t("zones.schedules"), h("textarea", { id: "schedules", onchange: (e) => { try { ed.config.schedules = JSON.parse(e.target.value || "{}"); renderItems(); } catch { /* shown on save */ } } }))),
      ),
    ),
  );
}

function cameraPicker(cameras) {
  return select(
    [["", t("zones.choose")], ...cameras.map((c) => [`${c.site}/${c.camera}`, `${c.site} / ${c.camera} (${t(`zones.state.${c.state || "none"}`)})`])],
    ed.site ? `${ed.site}/${ed.camera}` : "",
    { id: "camera" },
    (v) => { if (v) location.hash = `#${v}`; },
  );
}

async function open() {
  clearInterval(ed.poll);
  const cameras = await api("/zones/cameras");
  const m = location.hash.match(/^#([\w.-]+)\/([\w.-]+)$/);
  if (!m) {
    ed.site = null;
    main.replaceChildren(h("section", {}, h("h1", {}, t("zones.title")), h("p", {}, t("zones.pick"), " ", cameraPicker(cameras))));
    return;
  }
  [ed.site, ed.camera] = [m[1], m[2]];
  const cfg = await api(`/zones/${ed.site}/${ed.camera}`);
  ed.config = cfg.zones ? { ...emptyConfig(null), ...structuredClone(cfg.zones) } : emptyConfig(cfg.default_ring);
  ed.saved = !!cfg.zones;
  ed.draft = [];
  main.replaceChildren(editor(cfg, cameras));
  setTool("select");
  renderItems();
  showStatus(cfg);
  if (cfg.state === "pending") watch();
  snapshot();
}

async function start() {
  if (!auth.token) {
    location.href = "./";
    return;
  }
  try {
    await setLanguage(rememberedLanguage() || "zh-CN");
    const [me, prefs, sites] = await Promise.all([api("/users/me"), api("/dashboard/preferences"), api("/sites")]);
    const chosen = prefs.chosen ? prefs.language : rememberedLanguage() || prefs.language;
    if (chosen !== language()) await setLanguage(chosen);
    setSiteZones(sites);
    document.getElementById("whoami").textContent = t("nav.whoami", { user: me.username, role: term("role", me.role) });
    await open();
  } catch (err) {
    main.replaceChildren(h("p", { class: "error" }, err.message));
  }
}

window.addEventListener("ringwatch:logged-out", () => (location.href = "./"));
window.addEventListener("hashchange", () => open().catch((err) => main.replaceChildren(h("p", { class: "error" }, err.message))));
start();
