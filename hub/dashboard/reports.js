// The audit log (admins and auditors: filter by who, what and when, export CSV) and the
// false-match report (per camera and threshold: decided, rejected, the rate, and the
// sightings kept quiet by a suppression after a rejection).

import { api } from "./api.js";
import { h } from "./dom.js";
import { t } from "./i18n.js";
import { auditRows } from "./incident.js";

const WHEN = { all: 0, "1h": 3600e3, "24h": 86400e3, "7d": 7 * 86400e3 };

function csvCell(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

/** The rows as CSV (header first); times in ISO UTC so a spreadsheet sorts them. */
export function auditCsv(rows) {
  const head = ["id", "at", "actor", "role", "action", "entity", "entity_id", "reason", "detail"];
  const lines = rows.map((a) => [a.id, a.at, a.actor, a.role, a.action, a.entity, a.entity_id, a.reason, JSON.stringify(a.detail)].map(csvCell).join(","));
  return [head.join(","), ...lines].join("\n") + "\n";
}

export async function auditPage() {
  const filters = { actor: "", action: "", entity: "", when: "24h" };
  const body = h("tbody", { id: "audit-rows" });
  const count = h("p", { class: "muted", id: "audit-count" });
  let shown = [];
  const load = async () => {
    const query = new URLSearchParams({ limit: "5000" });
    for (const key of ["actor", "action", "entity"]) if (filters[key]) query.set(key, filters[key]);
    // Header values must be Latin-1: the reason for reading is a fixed ASCII phrase.
    const rows = await api(`/audit?${query}`, { headers: { "X-Reason": "duty console audit page" } });
    const span = WHEN[filters.when];
    const now = Date.now();
    shown = rows.filter((a) => !span || now - Date.parse(a.at) <= span).reverse();
    count.textContent = t("audit.count", { count: shown.length });
    body.replaceChildren(...auditRows(shown));
  };
  const input = (name) => {
    const el = h("input", { name, id: `audit-${name}`, placeholder: t(`audit.f.${name}`), "aria-label": t(`audit.f.${name}`) });
    el.addEventListener("change", () => { filters[name] = el.value.trim(); load().catch((err) => (count.textContent = err.message)); });
    return el;
  };
  const when = h("select", { id: "audit-when", "aria-label": t("audit.f.when") }, Object.keys(WHEN).map((w) => h("option", { value: w, selected: w === filters.when }, t(`board.range.${w}`))));
  when.addEventListener("change", () => { filters.when = when.value; load().catch(() => {}); });
  const exportCsv = () => {
    const url = URL.createObjectURL(new Blob([auditCsv(shown)], { type: "text/csv" }));
    const a = h("a", { href: url, download: "ringwatch-audit.csv" });
    document.body.append(a);
    a.click();
    a.remove();
    setTimeout(() => URL.revokeObjectURL(url), 1000);
  };
  await load();
  return h(
    "section",
    { id: "audit-page" },
    h("h1", {}, t("audit.title")),
    h("div", { class: "filters" }, input("actor"), input("action"), input("entity"), when, h("button", { type: "button", id: "audit-csv", onclick: exportCsv }, t("audit.export"))),
    count,
    h(
      "div",
      { class: "table-wrap" },
      h("table", { class: "cards audit" }, h("thead", {}, h("tr", {}, ["when", "who", "role", "action", "reason", "detail"].map((c) => h("th", {}, t(`audit.col.${c}`))))), body),
    ),
  );
}

export async function falseMatchPage() {
  const rows = await api("/incidents/reports/false-matches");
  const body = rows.length
    ? rows.map((r) =>
        h(
          "tr",
          { dataset: { camera: r.camera } },
          h("td", { dataset: { label: t("fm.col.camera") } }, r.camera),
          h("td", { dataset: { label: t("fm.col.threshold") } }, r.threshold.toFixed(3)),
          h("td", { dataset: { label: t("fm.col.decided") } }, String(r.decided)),
          h("td", { dataset: { label: t("fm.col.confirmed") } }, String(r.confirmed)),
          h("td", { dataset: { label: t("fm.col.rejected") } }, String(r.rejected)),
          h("td", { dataset: { label: t("fm.col.rate") } }, `${(100 * r.false_match_rate).toFixed(1)}%`),
          h("td", { dataset: { label: t("fm.col.suppressed") }, class: "suppressed" }, String(r.suppressed_on_camera ?? 0)),
          h("td", { dataset: { label: t("fm.col.reasons") } }, r.reasons.join(t("list.sep")) || "–"),
        ),
      )
    : [h("tr", {}, h("td", { colspan: 8, class: "muted" }, t("fm.none")))];
  const cols = ["camera", "threshold", "decided", "confirmed", "rejected", "rate", "suppressed", "reasons"];
  return h(
    "section",
    { id: "false-match-page" },
    h("h1", {}, t("fm.title")),
    h("p", { class: "muted" }, t("fm.explain")),
    h("div", { class: "table-wrap" }, h("table", { class: "cards", id: "false-matches" }, h("thead", {}, h("tr", {}, cols.map((c) => h("th", {}, t(`fm.col.${c}`))))), h("tbody", {}, body))),
  );
}

