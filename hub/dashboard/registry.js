// The watch list: list and search, enrol with a photo (refusals shown with their reason),
// edit, review, delist, and review-due warnings.

import { api } from "./api.js";
import { h, colourBadge, fmtTime } from "./dom.js";
import { imageUrl } from "./api.js";

const DAY = 86400000;
const SOON_DAYS = 30;

function today() {
  return new Date().toISOString().slice(0, 10);
}

function plusDays(days) {
  return new Date(Date.now() + days * DAY).toISOString().slice(0, 10);
}

/** "past due" / "due soon" / null for a review date. */
export function reviewState(reviewDue) {
  if (reviewDue < today()) return "past due";
  if (reviewDue <= plusDays(SOON_DAYS)) return "due soon";
  return null;
}

function reviewBadge(p) {
  const state = reviewState(p.review_due);
  if (!state) return null;
  return h("span", { class: `badge review ${state === "past due" ? "overdue" : "soon"}` }, `review ${state}`);
}

export async function registryPage() {
  const rows = h("tbody", { id: "persons" });
  const warning = h("p", { class: "warning", id: "review-warning", hidden: true });
  const search = h("input", { type: "search", id: "search", placeholder: "Search name or case reference" });
  const load = async () => {
    const q = search.value.trim();
    const persons = await api(`/persons${q ? `?q=${encodeURIComponent(q)}` : ""}`);
    const due = persons.filter((p) => p.tier !== "green" && reviewState(p.review_due));
    const past = due.filter((p) => reviewState(p.review_due) === "past due");
    warning.hidden = !due.length;
    warning.textContent = `${past.length} entr${past.length === 1 ? "y is" : "ies are"} past review (not matched until reviewed); ${due.length - past.length} due within ${SOON_DAYS} days.`;
    rows.replaceChildren(
      ...persons.map((p) =>
        h(
          "tr",
          { class: p.matchable ? "" : "inactive", dataset: { id: p.id } },
          h("td", {}, h("a", { href: `#/person/${p.id}` }, p.display_name)),
          h("td", {}, colourBadge(p.tier)),
          h("td", {}, p.case_reference),
          h("td", {}, p.station_id),
          h("td", {}, p.review_due, " ", reviewBadge(p)),
          h("td", {}, p.matchable ? "yes" : "no"),
          h("td", {}, p.templates),
        ),
      ),
    );
  };
  search.addEventListener("input", () => load().catch(() => {}));
  await load();
  return h(
    "section",
    {},
    h("h1", {}, "Watch list"),
    h("div", { class: "filters" }, search, h("a", { href: "#/enrol", class: "button", id: "enrol-link" }, "Enrol a person")),
    warning,
    h(
      "table",
      { class: "persons" },
      h("thead", {}, h("tr", {}, ["Name", "Tier", "Case reference", "Station", "Review due", "Matched", "Photos"].map((t) => h("th", {}, t)))),
      rows,
    ),
    h("p", { class: "muted" }, "Every read, search and change is written to the audit log. There are no fields for ethnicity, religion, politics or health."),
  );
}

function field(label, input) {
  return h("label", {}, label, input);
}

function tierSelect(value) {
  return h("select", { name: "tier" }, ["red", "orange", "yellow"].map((t) => h("option", { value: t, selected: t === value }, t)));
}

let flash = null; // a message carried to the next page (e.g. a refused photo after enrolment)

export async function enrolPage() {
  const stations = await api("/stations");
  const error = h("p", { class: "error", id: "enrol-error", role: "alert" });
  const form = h(
    "form",
    { class: "card", id: "enrol" },
    h("h1", {}, "Enrol a person"),
    field("Display name", h("input", { name: "display_name", required: true })),
    field("Tier", tierSelect("orange")),
    field("Reason", h("textarea", { name: "reason", required: true, rows: 2 })),
    field("Case reference", h("input", { name: "case_reference", required: true })),
    field("Legal basis", h("input", { name: "legal_basis", required: true })),
    field("Responsible station", h("select", { name: "station_id" }, stations.map((s) => h("option", { value: s.id }, s.name)))),
    field("Review due", h("input", { name: "review_due", type: "date", value: plusDays(180), required: true })),
    field("Photo (one face, well lit)", h("input", { name: "photo", type: "file", accept: "image/*" })),
    h("button", { type: "submit" }, "Enrol"),
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
        flash = `Photo refused: ${err.message}`;
      }
    }
    location.hash = `#/person/${person.id}`;
  });
  return form;
}

async function upload(personId, file) {
  const form = new FormData();
  form.append("photo", file);
  return api(`/persons/${personId}/photos`, { method: "POST", form });
}

export async function personPage(id) {
  const page = h("section", { id: "person-page" });
  const render = async (message) => {
    const [p, photos] = await Promise.all([api(`/persons/${id}`), api(`/persons/${id}/photos`)]);
    const result = h("p", { id: "photo-result", role: "status", class: message && message.startsWith("Photo refused") ? "error" : "ok" }, message || "");
    const state = reviewState(p.review_due);
    page.replaceChildren(
      h("h1", {}, p.display_name, " ", colourBadge(p.tier)),
      state && p.tier !== "green"
        ? h("p", { class: "warning", id: "review-warning" }, state === "past due" ? `Review was due ${p.review_due}: this entry is NOT matched until it is reviewed.` : `Review due ${p.review_due}.`)
        : null,
      p.tier === "green" ? h("p", { class: "warning" }, "Delisted: never matched.") : null,
      h(
        "dl",
        { class: "card" },
        ...[
          ["Reason", p.reason],
          ["Case reference", p.case_reference],
          ["Legal basis", p.legal_basis],
          ["Station", p.station_id],
          ["Created by", `${p.created_by}, ${fmtTime(p.created_at)}`],
          ["Review due", p.review_due],
          ["Matched", p.matchable ? "yes" : "no"],
        ].map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]),
      ),
      photoSection(p, photos, result, render),
      editForm(p, render),
    );
  };
  const message = flash;
  flash = null;
  await render(message);
  return page;
}

function photoSection(p, photos, result, render) {
  const input = h("input", { type: "file", name: "photo", id: "photo-file", accept: "image/*" });
  const form = h("form", { id: "photo-upload", class: "row" }, input, h("button", { type: "submit" }, "Add photo"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    if (!input.files.length) return;
    try {
      await upload(p.id, input.files[0]);
      await render("Photo enrolled.");
    } catch (err) {
      await render(`Photo refused: ${err.message}`);
    }
  });
  return h(
    "section",
    { class: "card", id: "photos" },
    h("h2", {}, `Enrolled photos (${photos.length})`),
    h(
      "div",
      { class: "snaps" },
      photos.map((ph) => {
        const img = h("img", { alt: `photo ${ph.id}`, class: "face" });
        imageUrl(`/api/v1/persons/${p.id}/photos/${ph.id}/image`).then((url) => url && (img.src = url));
        return h("figure", { dataset: { template: ph.id } }, img, h("figcaption", {}, `quality ${ph.quality.toFixed(2)}, ${fmtTime(ph.created_at)}`));
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
    h("h2", {}, "Edit, review or delist"),
    field("Display name", h("input", { name: "display_name", value: p.display_name })),
    field("Tier", tierSelect(p.tier)),
    field("Reason", h("textarea", { name: "reason", rows: 2 }, p.reason)),
    field("Case reference", h("input", { name: "case_reference", value: p.case_reference })),
    field("Legal basis", h("input", { name: "legal_basis", value: p.legal_basis })),
    field("Review due", h("input", { name: "review_due", type: "date", value: p.review_due })),
    field("Why (kept in the audit log)", h("input", { name: "why", required: true, id: "why" })),
    h(
      "div",
      { class: "row" },
      h("button", { type: "submit", value: "save" }, "Save changes"),
      h("button", { type: "submit", value: "review", id: "reviewed" }, "Reviewed: keep for 180 days"),
      h("button", { type: "submit", value: "delist", class: "bad", id: "delist" }, "Delist"),
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
      await render(action === "delist" ? "Delisted." : "Saved.");
    } catch (err) {
      error.textContent = err.message;
    }
  });
  return form;
}
