// Response-stage timers: chips that count down to each stage's deadline on the hub's clock,
// and stop (showing when it was done) once the stage is done.

import { h, fmtClock, fmtSpan } from "./dom.js";

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

export function timerChip(stage) {
  const chip = h("span", {
    class: "timer",
    dataset: { stage: stage.name, label: stage.label || stage.name, state: stageState(stage), due: stage.due_at || "" },
    title: stage.due_at ? `due ${fmtClock(stage.due_at)}` : "no deadline (late incident)",
  });
  renderChip(chip, stage);
  return chip;
}

function renderChip(chip, stage) {
  const label = stage.label || stage.name;
  const state = chip.dataset.state;
  if (state === "done") {
    const met = stage.due_at && Date.parse(stage.done_at) <= Date.parse(stage.due_at);
    chip.textContent = `✓ ${label} ${fmtClock(stage.done_at)}${stage.due_at ? (met ? " (in time)" : " (late)") : ""}`;
  } else if (state === "cancelled") {
    chip.textContent = `${label}: not needed`;
  } else if (state === "untimed") {
    chip.textContent = `${label}: no timer (late)`;
  } else {
    tick(chip, label);
  }
}

function tick(chip, label) {
  const left = Date.parse(chip.dataset.due) - hubNow();
  chip.classList.toggle("overdue", left < 0);
  chip.textContent = left >= 0 ? `${label} ${fmtSpan(left)} left` : `${label} OVERDUE ${fmtSpan(left)}`;
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

export function timerChips(stages) {
  return h(
    "span",
    { class: "timers" },
    stages.map((s) => timerChip(s)),
  );
}
