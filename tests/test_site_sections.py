"""The tracker, rules, face-track, shed and motion sections of the site file reach the
stages, and a wrong key is refused with its path."""

from __future__ import annotations

from pathlib import Path

import pytest

from ringwatch.edge.agent import Agent
from ringwatch.edge.config import load_site_config
from ringwatch.edge.shed import FireEvidence, FirePersistence
from ringwatch.errors import ConfigError
from tests.test_agent import Found, ListSink, ListSource, ScriptedAnalyzer

SITE = """
site: campus
device: box-1
tracker: {min_hits: 5, lost_frames: 12}
rules: {exit_frames: 9}
face_tracks: {min_quality: 0.7}
motion: {enabled: true, recheck_every: 4}
shed:
  camera_rule: {rule}
  evidence: {{raise_at: 1.2}}
cameras:
  - id: gate
    source: a.mp4
    tasks: [persons]
    zones: [{{id: z, role: outer, polygon: [[0, 0], [1, 0], [1, 1]]}}]
  - id: shed-cam
    source: b.mp4
    role: shed
    shed: shed-a
    tasks: [fire]
    zones: [{{id: bays, role: shed, polygon: [[0, 0], [1, 0], [1, 1]]}}]
"""


def agent_for(tmp_path: Path, rule: str) -> Agent:
    path = tmp_path / "site.yaml"
    path.write_text(SITE.replace("{rule}", rule).replace("{{", "{").replace("}}", "}"))
    cfg = load_site_config(path)
    analyzers = {c.id: ScriptedAnalyzer(Found()) for c in cfg.cameras}
    sources = {c.id: ListSource([]) for c in cfg.cameras}
    return Agent(cfg, analyzers, sources, ListSink())


def test_sections_reach_the_stages(tmp_path: Path) -> None:
    agent = agent_for(tmp_path, "evidence")
    gate = agent.pipelines["gate"]
    assert gate.tracker.config.min_hits == 5 and gate.tracker.config.lost_frames == 12
    assert gate.tunables.rules.exit_frames == 9
    assert gate.tunables.faces.min_quality == 0.7
    worker = agent.workers["gate"]
    assert worker.gate is not None and worker.gate.config.recheck_every == 4
    assert agent.workers["shed-cam"].gate is None  # fire cameras are never gated
    monitor = agent.sheds["shed-cam"]
    assert isinstance(monitor.camera, FireEvidence) and monitor.camera.config.raise_at == 1.2


def test_the_old_k_of_n_rule_can_still_be_chosen(tmp_path: Path) -> None:
    assert isinstance(agent_for(tmp_path, "k_of_n").sheds["shed-cam"].camera, FirePersistence)


def test_a_wrong_key_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "site.yaml"
    text = SITE.replace("{rule}", "evidence").replace("{{", "{").replace("}}", "}")
    path.write_text(text.replace("min_hits: 5", "min_hitz: 5"))
    with pytest.raises(ConfigError, match="tracker.min_hitz"):
        load_site_config(path)
