// Evidence on the incident page (issue 14): every clip, snapshot and face crop of the
// incident (GET /incidents/{id}/media), played from authenticated blobs, and the
// "Export case" button that downloads the signed case file (GET /incidents/{id}/export).

import { api, imageUrl } from "./api.js";
import { h, fmtTime } from "./dom.js";
import "./notify.js"; // browser notifications install themselves (issue 14)

function clip(item) {
  const video = h("video", { controls: true, muted: true, playsinline: true, preload: "auto", width: 480, class: "clip", dataset: { media: item.id } });
  imageUrl(item.url).then((url) => {
    if (url) video.src = url;
    else video.replaceWith(h("p", { class: "muted" }, "clip not available"));
  });
  return h("figure", {}, video, h("figcaption", {}, `Clip, ${item.camera}, ${fmtTime(item.started_at)} (${item.duration_s} s)`));
}

function picture(item) {
  const alt = item.kind === "crop" ? "Face crop" : "Snapshot";
  const el = h("img", { alt, class: item.kind === "crop" ? "face" : "snapshot", width: 320, dataset: { media: item.id } });
  imageUrl(item.url).then((url) => {
    if (url) el.src = url;
    else el.replaceWith(h("p", { class: "muted" }, `${alt}: not available`));
  });
  return h("figure", {}, el, h("figcaption", {}, `${alt}, ${item.camera}, ${fmtTime(item.started_at)}`));
}

async function exportCase(id, status) {
  status.textContent = "Preparing the case file…";
  try {
    const lang = (document.documentElement.lang || "en").toLowerCase().startsWith("zh") ? "zh-CN" : "en";
    const blob = await api(`/incidents/${id}/export?lang=${lang}`);
    const link = h("a", { href: URL.createObjectURL(blob), download: `case-${id}.zip`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    status.textContent = "Case file downloaded.";
  } catch (err) {
    status.textContent = err.message;
  }
}

/** The incident page's media card (called once per render of the page). */
export function mediaCard(id) {
  const list = h("div", { class: "faces", id: "media-list" });
  const note = h("p", { class: "muted", id: "media-status" }, "Loading clips and snapshots…");
  const exported = h("p", { class: "muted", id: "export-status", role: "status" });
  api(`/incidents/${id}/media`)
    .then((items) => {
      // Event snapshots and face crops are shown by the snapshots and evidence cards already.
      const uploaded = items.filter((m) => !m.id.startsWith("event-") && !m.id.startsWith("sighting-"));
      note.textContent = uploaded.length ? `${uploaded.length} item(s)` : "No clips or snapshots yet.";
      const ordered = [...uploaded.filter((m) => m.kind === "clip"), ...uploaded.filter((m) => m.kind !== "clip")];
      list.replaceChildren(...ordered.map((m) => (m.kind === "clip" ? clip(m) : picture(m))));
    })
    .catch((err) => {
      note.textContent = err.message;
    });
  const button = h("button", { type: "button", id: "export-case", onclick: () => exportCase(id, exported) }, "Export case");
  return h("section", { class: "card", id: "media" }, h("h2", {}, "Clips and snapshots"), note, list, button, exported);
}
