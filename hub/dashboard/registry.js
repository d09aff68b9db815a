// The watch list: list and search, enrol with a photo (refusals shown with their reason; in a
// photo of several people the officer clicks the face to enrol), edit, review, delist, and
// review-due warnings.

import { api, imageUrl } from "./api.js";
import { h, colourBadge, fmtDate, fmtTime } from "./dom.js";
import { t } from "./i18n.js";

const DAY = 86400000;
const SOON_DAYS = 30;

function today() {
  return fmtDate(Date.now());
}

function plusDays(days) {
  return fmtDate(Date.now() + days * DAY);
}

/** "past_due" / "due_soon" / null for a review date. */
export function reviewState(reviewDue) {
  if (reviewDue < today()) return "past_due";
  if (reviewDue <= plusDays(SOON_DAYS)) return "due_soon";
  return null;
}

function reviewBadge(p) {
  const state = reviewState(p.review_due);
  if (!state) return null;
  return h("span", { class: `badge review ${state === "past_due" ? "overdue" : "soon"}` }, t(`review.${state}`));
}

function personRow(p) {
  return h(
    "tr",
    { class: p.matchable ? "" : "inactive", dataset: { id: p.id } },
    h("td", { dataset: { label: t("persons.col.name") } }, h("a", { href: `#/person/${p.id}` }, p.display_name)),
    h("td", { dataset: { label: t("persons.col.tier") } }, colourBadge(p.tier)),
    h("td", { dataset: { label: t("persons.col.case") } }, p.case_reference),
    h("td", { dataset: { label: t("persons.col.station") } }, p.station_id),
    h("td", { dataset: { label: t("persons.col.review") } }, p.review_due, " ", reviewBadge(p)),
    h("td", { dataset: { label: t("persons.col.matched") } }, p.matchable ? t("common.yes") : t("common.no")),
    h("td", { dataset: { label: t("persons.col.photos") } }, String(p.templates)),
  );
}

export async function registryPage() {
  const rows = h("tbody", { id: "persons" });
  const warning = h("p", { class: "warning", id: "review-warning", hidden: true });
  const search = h("input", { type: "search", id: "search", placeholder: t("persons.search"), "aria-label": t("persons.search") });
  const load = async () => {
    const q = search.value.trim();
    const persons = await api(`/persons${q ? `?q=${encodeURIComponent(q)}` : ""}`);
    const due = persons.filter((p) => p.tier !== "green" && reviewState(p.review_due));
    const past = due.filter((p) => reviewState(p.review_due) === "past_due");
    warning.hidden = !due.length;
    warning.textContent = t("persons.review_warning", { past: past.length, soon: due.length - past.length, days: SOON_DAYS });
    rows.replaceChildren(...persons.map(personRow));
  };
  search.addEventListener("input", () => load().catch(() => {}));
  await load();
  return h(
    "section",
    {},
    h("h1", {}, t("persons.title")),
    h("div", { class: "filters" }, search, h("a", { href: "#/enrol", class: "button", id: "enrol-link" }, t("persons.enrol"))),
    warning,
    h(
      "div",
      { class: "table-wrap" },
      h(
        "table",
        { class: "persons cards" },
        h("thead", {}, h("tr", {}, ["name", "tier", "case", "station", "review", "matched", "photos"].map((c) => h("th", {}, t(`persons.col.${c}`))))),
        rows,
      ),
    ),
    h("p", { class: "muted" }, t("persons.privacy")),
  );
}

function field(label, input) {
  return h("label", {}, label, input);
}

function tierSelect(value) {
  return h("select", { name: "tier" }, ["red", "orange", "yellow"].map((c) => h("option", { value: c, selected: c === value }, t(`colour.${c}`))));
}

let flash = null; // a message carried to the next page (e.g. a refused photo after enrolment)

export async function enrolPage() {
  const stations = await api("/stations");
  const error = h("p", { class: "error", id: "enrol-error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "enrol" },
    h("h1", {}, t("enrol.title")),
    field(t("person.display_name"), h("input", { name: "display_name", required: true })),
    field(t("person.tier"), tierSelect("orange")),
    field(t("person.reason"), h("textarea", { name: "reason", required: true, rows: 2 })),
    field(t("person.case_reference"), h("input", { name: "case_reference", required: true })),
    field(t("person.legal_basis"), h("input", { name: "legal_basis", required: true })),
    field(t("person.station"), h("select", { name: "station_id" }, stations.map((s) => h("option", { value: s.id }, s.name)))),
    field(t("person.review_due"), h("input", { name: "review_due", type: "date", value: plusDays(180), required: true })),
    field(t("enrol.photo"), h("input", { name: "photo", type: "file", accept: "image/*" })),
    h("button", { type: "submit" }, t("enrol.submit")),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const body = {};
    for (const key of ["display_name", "tier", "reason", "case_reference", "legal_basis", "station_id", "review_due"]) body[key] = data.get(key);
    let person;
    try {
      person = await api("/persons", { method: "POST", body });
    } catch (err) {
      error.textContent = err.message;
      return;
    }
    const photo = data.get("photo");
    if (photo && photo.size) {
      try {
        await upload(person.id, photo);
      } catch (err) {
        // the person page shows the photo again, with its faces to click when it has several
        flash = { ok: false, text: err.message, file: photo, faces: err.detail?.faces, code: err.detail?.code };
      }
    }
    location.hash = `#/person/${person.id}`;
  });
  return form;
}

async function upload(personId, file, point = null) {
  const form = new FormData();
  form.append("photo", file);
  const at = point ? `?point=${Math.round(point.x)},${Math.round(point.y)}` : "";
  return api(`/persons/${personId}/photos${at}`, { method: "POST", form });
}

/** Positions ``el`` in percentages of the photo (through the CSSOM: the policy refuses
 * style attributes). */
function place(el, box) {
  for (const [key, value] of Object.entries(box)) el.style[key] = `${value}%`;
  return el;
}

/** The chosen photo, its face boxes (when the hub sent them) and the clicked point, drawn
 * over it in percentages of the photo so that it scales on a phone. */
function picker(file, faces, onPick) {
  const img = h("img", { alt: t("photos.preview"), id: "photo-preview" });
  const frame = h("div", { class: "pick", id: "photo-pick" }, img);
  const url = URL.createObjectURL(file);
  img.src = url;
  let marker = null;
  const mark = (x, y) => {
    marker?.remove();
    const w = img.naturalWidth, hh = img.naturalHeight;
    marker = place(h("span", { class: "pick-point", id: "pick-point" }), { left: (100 * x) / w, top: (100 * y) / hh });
    frame.append(marker);
    for (const box of frame.querySelectorAll(".face-box")) {
      const [x1, y1, x2, y2] = box.dataset.box.split(",").map(Number);
      const chosen = x1 <= x && x <= x2 && y1 <= y && y <= y2;
      box.classList.toggle("chosen", chosen);
      box.setAttribute("aria-pressed", String(chosen));
    }
    onPick({ x, y });
  };
  img.addEventListener("error", () => {
    URL.revokeObjectURL(url); // e.g. a format this browser cannot show: it may still be sent
    frame.replaceChildren(h("p", { class: "hint", id: "photo-unreadable" }, t("photos.unreadable")));
  });
  img.addEventListener("load", () => {
    URL.revokeObjectURL(url); // decoded: the file's URL is no longer needed
    const w = img.naturalWidth, hh = img.naturalHeight;
    const lefts = (faces || []).map(([x1]) => x1);
    for (const [x1, y1, x2, y2] of faces || []) {
      const n = 1 + lefts.filter((v) => v < x1).length; // counted from the left, as seen
      const box = h("button", { type: "button", class: "face-box", dataset: { box: `${x1},${y1},${x2},${y2}` }, "aria-label": t("photos.face_n", { n }), "aria-pressed": "false" });
      place(box, { left: (100 * x1) / w, top: (100 * y1) / hh, width: (100 * (x2 - x1)) / w, height: (100 * (y2 - y1)) / hh });
      box.addEventListener("click", (e) => {
        e.stopPropagation();
        mark((x1 + x2) / 2, (y1 + y2) / 2);
      });
      frame.append(box);
    }
  });
  img.addEventListener("click", (e) => mark((e.offsetX / img.clientWidth) * img.naturalWidth, (e.offsetY / img.clientHeight) * img.naturalHeight));
  return frame;
}

function facts(p) {
  const rows = [
    ["person.reason", p.reason],
    ["person.case_reference", p.case_reference],
    ["person.legal_basis", p.legal_basis],
    ["person.station", p.station_id],
    ["person.created", t("person.created_value", { who: p.created_by || "–", at: fmtTime(p.created_at) })],
    ["person.review_due", p.review_due],
    ["person.matched", p.matchable ? t("common.yes") : t(p.templates ? "person.not_matched" : "person.no_photo")],
  ];
  return h("dl", { class: "card facts", id: "person-facts" }, rows.map(([k, v]) => [h("dt", {}, t(k)), h("dd", { dataset: { key: k } }, v ?? "–")]));
}

export async function personPage(id) {
  const page = h("section", { id: "person-page" });
  const render = async (message) => {
    const [p, photos] = await Promise.all([api(`/persons/${id}`), api(`/persons/${id}/photos`)]);
    const result = h("p", { id: "photo-result", role: "status", class: message && !message.ok ? "error" : "ok" }, message ? message.text : "");
    const state = reviewState(p.review_due);
    // replaceChildren(null) would print "null": build the list without the absent parts.
    const parts = [
      h("h1", {}, p.display_name, " ", colourBadge(p.tier)),
      state && p.tier !== "green"
        ? h("p", { class: "warning", id: "review-warning" }, state === "past_due" ? t("person.review_past", { date: p.review_due }) : t("person.review_soon", { date: p.review_due }))
        : null,
      p.tier === "green" ? h("p", { class: "warning" }, t("person.delisted")) : null,
      facts(p),
      photoSection(p, photos, result, render, message),
      editForm(p, render),
    ];
    page.replaceChildren(...parts.filter(Boolean));
  };
  const message = flash;
  flash = null;
  await render(message);
  return page;
}

function photoSection(p, photos, result, render, message) {
  // a photo refused on the last try (from this page or the enrol page) stays chosen, with
  // its faces to click when the hub found several
  let file = message?.file || null;
  let point = null;
  const input = h("input", { type: "file", name: "photo", id: "photo-file", accept: "image/*" });
  const hint = h("p", { class: "hint", id: "pick-hint" });
  const area = h("div", { id: "photo-chosen" });
  const show = (faces, code) => {
    point = null;
    const several = code === "several_faces" || (faces?.length || 0) > 1;
    hint.textContent = file ? t(several ? "photos.pick_face" : "photos.pick_optional") : "";
    area.replaceChildren(...(file ? [picker(file, faces, (at) => (point = at))] : []));
  };
  input.addEventListener("change", () => {
    file = input.files[0] || null;
    show(null);
  });
  const form = h("form", { id: "photo-upload" }, h("div", { class: "row" }, input, h("button", { type: "submit" }, t("photos.add"))), hint, area);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!file) return;
    try {
      await upload(p.id, file, point);
      await render({ ok: true, text: t("photos.enrolled") });
    } catch (err) {
      await render({ ok: false, text: err.message, file, faces: err.detail?.faces, code: err.detail?.code });
    }
  });
  show(message?.faces, message?.code);
  return h(
    "section",
    { class: "card", id: "photos" },
    h("h2", {}, t("photos.title", { count: photos.length })),
    h(
      "div",
      { class: "snaps" },
      photos.map((ph) => {
        const img = h("img", { alt: t("photos.alt"), class: "face" });
        imageUrl(`/api/v1/persons/${p.id}/photos/${ph.id}/image`).then((url) => url && (img.src = url));
        return h("figure", { dataset: { template: ph.id } }, img, h("figcaption", {}, t("photos.caption", { quality: ph.quality.toFixed(2), at: fmtTime(ph.created_at) })));
      }),
    ),
    form,
    result,
  );
}

function editForm(p, render) {
  const error = h("p", { class: "error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "edit" },
    h("h2", {}, t("edit.title")),
    field(t("person.display_name"), h("input", { name: "display_name", value: p.display_name })),
    field(t("person.tier"), tierSelect(p.tier)),
    field(t("person.reason"), h("textarea", { name: "reason", rows: 2 }, p.reason)),
    field(t("person.case_reference"), h("input", { name: "case_reference", value: p.case_reference })),
    field(t("person.legal_basis"), h("input", { name: "legal_basis", value: p.legal_basis })),
    field(t("person.review_due"), h("input", { name: "review_due", type: "date", value: p.review_due })),
    field(t("edit.why"), h("input", { name: "why", required: true, id: "why" })),
    h(
      "div",
      { class: "row wrap" },
      h("button", { type: "submit", value: "save" }, t("edit.save")),
      h("button", { type: "submit", value: "review", id: "reviewed" }, t("edit.reviewed")),
      h("button", { type: "submit", value: "delist", class: "bad", id: "delist" }, t("edit.delist")),
    ),
    error,
  );
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const action = e.submitter ? e.submitter.value : "save";
    const body = { why: data.get("why") };
    if (action === "delist") body.tier = "green";
    else if (action === "review") body.review_due = plusDays(180);
    else for (const key of ["display_name", "tier", "reason", "case_reference", "legal_basis", "review_due"]) body[key] = data.get(key);
    try {
      await api(`/persons/${p.id}`, { method: "PATCH", body });
      await render({ ok: true, text: t(action === "delist" ? "edit.delisted" : "edit.saved") });
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}
