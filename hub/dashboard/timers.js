// Response-stage timers: chips that count down to each stage's deadline on the hub's clock,
// and stop (showing when it was done) once the stage is done.

import { h, fmtClock, fmtSpan } from "./dom.js";
import { has, t } from "./i18n.js";

let offsetMs = 0; // hub clock minus browser clock

export function syncClock(hubNowIso) {
  if (hubNowIso) offsetMs = Date.parse(hubNowIso) - Date.now();
}

export function hubNow() {
  return Date.now() + offsetMs;
}

export function stageState(stage) {
  if (stage.done_at) return "done";
  if (stage.cancelled) return "cancelled";
  if (!stage.due_at) return "untimed";
  return "running";
}

/** A stage's name in the user's language: per kind where the kinds differ, else shared. */
export function stageLabel(stage, kind) {
  if (kind && has(`stage.${kind}.${stage.name}`)) return t(`stage.${kind}.${stage.name}`);
  if (has(`stage.${stage.name}`)) return t(`stage.${stage.name}`);
  return stage.label || stage.name;
}

export function timerChip(stage, kind, site) {
  const label = stageLabel(stage, kind);
  const chip = h("span", {
    class: "timer",
    dataset: { stage: stage.name, label, state: stageState(stage), due: stage.due_at || "" },
    title: stage.due_at ? t("timer.due", { at: fmtClock(stage.due_at, site) }) : t("timer.no_deadline"),
  });
  renderChip(chip, stage, label, site);
  return chip;
}

function renderChip(chip, stage, label, site) {
  const state = chip.dataset.state;
  if (state === "done") {
    const met = stage.due_at && Date.parse(stage.done_at) <= Date.parse(stage.due_at);
    const when = fmtClock(stage.done_at, site);
    chip.textContent = stage.due_at ? t(met ? "timer.done_in_time" : "timer.done_late", { label, at: when }) : t("timer.done", { label, at: when });
  } else if (state === "cancelled") {
    chip.textContent = t("timer.not_needed", { label });
  } else if (state === "untimed") {
    chip.textContent = t("timer.untimed", { label });
  } else {
    tick(chip, label);
  }
}

function tick(chip, label) {
  const left = Date.parse(chip.dataset.due) - hubNow();
  chip.classList.toggle("overdue", left < 0);
  chip.textContent = left >= 0 ? t("timer.left", { label, left: fmtSpan(left) }) : t("timer.overdue", { label, late: fmtSpan(left) });
}

/** Tick every running chip inside ``root`` once a second; returns a stop function. */
export function runTimers(root) {
  const id = setInterval(() => {
    for (const chip of root.querySelectorAll('.timer[data-state="running"]')) {
      tick(chip, chip.dataset.label);
    }
  }, 1000);
  return () => clearInterval(id);
}

export function timerChips(stages, kind, site) {
  return h(
    "span",
    { class: "timers" },
    stages.map((s) => timerChip(s, kind, site)),
  );
}
