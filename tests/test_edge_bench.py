"""``ringwatch edge bench``: the unpaced run and the reference comparison print their
figures (a short run on the real clip and models; the figures themselves are not asserted,
timings belong to benchmarks)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from ringwatch.cli import main

REPO = Path(__file__).resolve().parent.parent


def site_file(tmp_path: Path, data_dir: Path) -> Path:
    raw = yaml.safe_load((REPO / "configs/site-campus.yaml").read_text())
    raw["cameras"] = raw["cameras"][:1]
    raw["cameras"][0]["source"] = str(data_dir / "faces/watchlist_demo/short_hamilton_clip.mp4")
    raw["models"]["threads"] = 1
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@pytest.mark.data
def test_unpaced_bench_analyses_frames_and_prints_the_table(
    tmp_path: Path, data_dir: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = site_file(tmp_path, data_dir)
    args = ["edge", "bench", "-c", str(cfg), "--models-dir", str(models_dir)]
    assert main([*args, "--unpaced", "--seconds", "3", "--copies", "2"]) == 0
    out = capsys.readouterr().out
    assert "unpaced" in out
    rows = re.findall(r"^(gate-\d)\s+all\s+([\d.]+)\s+(\d+)\s+(\d+)\s+0\s+0$", out, re.M)
    assert [r[0] for r in rows] == ["gate-1", "gate-2"]
    assert all(float(r[1]) > 0 for r in rows)


@pytest.mark.data
def test_reference_mode_prints_both_fps_and_the_ratio(
    tmp_path: Path, data_dir: Path, models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = site_file(tmp_path, data_dir)
    args = ["edge", "bench", "-c", str(cfg), "--models-dir", str(models_dir)]
    assert main([*args, "--reference", "--seconds", "2", "--rounds", "1"]) == 0
    out = capsys.readouterr().out
    got = re.search(r"ours ([\d.]+) fps, reference ([\d.]+) fps: ratio ([\d.]+)x", out)
    assert got is not None, out
    ours, ref, ratio = (float(g) for g in got.groups())
    assert ours > 0 and ref > 0 and ratio == pytest.approx(ours / ref, rel=0.05)
    assert "CPU per frame: reference / ours" in out
