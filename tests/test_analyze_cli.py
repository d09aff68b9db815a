"""``ringwatch analyze`` end to end on real files: an image, a folder, a video sampled at
--fps, a corrupt file; every line checked against the documented JSON schema."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from ringwatch.cli import main
from ringwatch.edge.config import Thresholds
from ringwatch.edge.perception_cli import expand_paths, sample_video

SHIPPED = Thresholds()
PEOPLE = "faces/watchlist_demo/knn/test/obama_and_biden.jpg"
STREET = "video/towncentre_clip_example01.mp4"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[dict[str, Any]], str]:
    code = main(["analyze", *argv])
    out, err = capsys.readouterr()
    return code, [json.loads(line) for line in out.splitlines()], err


def check_box(item: dict[str, Any], width: int, height: int, threshold: float) -> None:
    x1, y1, x2, y2 = item["box"]
    assert 0 <= x1 < x2 <= width and 0 <= y1 < y2 <= height
    assert threshold <= item["score"] <= 1


def check_record(rec: dict[str, Any], embeddings: bool = False) -> None:
    """The schema of one analysed image or frame, with the shipped thresholds."""
    assert set(rec) == {"source", "frame", "ts", "width", "height", "faces", "persons", "fire"}
    w, h = rec["width"], rec["height"]
    assert isinstance(rec["frame"], int) and rec["frame"] >= 0 and rec["ts"] >= 0
    for face in rec["faces"]:
        assert set(face) == {"box", "score", "landmarks", "quality"} | (
            {"embedding"} if embeddings else set()
        )
        check_box(face, w, h, SHIPPED.face)
        assert len(face["landmarks"]) == 5 and all(len(p) == 2 for p in face["landmarks"])
        assert 0 <= face["quality"] <= 1
        if embeddings:
            vector = np.array(face["embedding"])
            assert vector.shape == (128,) and np.linalg.norm(vector) == pytest.approx(1, abs=1e-3)
    for person in rec["persons"]:
        assert set(person) == {"box", "score"}
        check_box(person, w, h, SHIPPED.person)
    for fire in rec["fire"]:
        assert set(fire) == {"box", "score", "class"} and fire["class"] in {"fire", "smoke"}
        check_box(fire, w, h, SHIPPED.fire if fire["class"] == "fire" else SHIPPED.smoke)


@pytest.mark.data
def test_image_with_two_people_and_embeddings(
    capsys: pytest.CaptureFixture[str], models_dir: Path, data_dir: Path
) -> None:
    image = data_dir / PEOPLE
    code, lines, _ = run(capsys, str(image), "--models", str(models_dir), "--embeddings")
    assert code == 0 and len(lines) == 1
    rec = lines[0]
    check_record(rec, embeddings=True)
    assert (rec["source"], rec["frame"], rec["ts"]) == (str(image), 0, 0)
    assert (rec["width"], rec["height"]) == (2000, 1428)
    assert len(rec["faces"]) >= 2 and len(rec["persons"]) >= 2
    assert rec["fire"] == []
    # each face lies inside some person box
    for face in rec["faces"]:
        cx = (face["box"][0] + face["box"][2]) / 2
        cy = (face["box"][1] + face["box"][3]) / 2
        assert any(
            p["box"][0] <= cx <= p["box"][2] and p["box"][1] <= cy <= p["box"][3]
            for p in rec["persons"]
        )


@pytest.mark.data
def test_folder_is_sorted_and_tasks_limit_the_work(
    capsys: pytest.CaptureFixture[str], models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    fire_dir = data_dir / "fire" / "images" / "fire"
    picked = sorted(fire_dir.iterdir())[:2]
    for i, path in enumerate(reversed(picked)):
        shutil.copy(path, tmp_path / f"{1 - i}_{path.name}")
    (tmp_path / "notes.txt").write_text("not an image")
    code, lines, _ = run(capsys, str(tmp_path), "--models", str(models_dir), "--tasks", "fire")
    assert code == 0
    assert [Path(rec["source"]).name[:2] for rec in lines] == ["0_", "1_"]
    for rec in lines:
        check_record(rec)
        assert rec["faces"] == [] and rec["persons"] == []
    assert any(f["class"] == "fire" for rec in lines for f in rec["fire"])


@pytest.mark.data
def test_video_sampled_at_fps(
    capsys: pytest.CaptureFixture[str], models_dir: Path, data_dir: Path
) -> None:
    video = data_dir / STREET  # 41 frames at 10 fps
    code, lines, _ = run(
        capsys, str(video), "--models", str(models_dir), "--fps", "2", "--tasks", "persons"
    )
    assert code == 0
    assert [rec["frame"] for rec in lines] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert [rec["ts"] for rec in lines] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5, 4.0]
    for rec in lines:
        check_record(rec)
        assert (rec["width"], rec["height"]) == (690, 388)
        assert len(rec["persons"]) >= 10  # a busy street: ~20 people in view


@pytest.mark.data
def test_a_far_view_camera_setting_can_be_tried_on_its_footage(
    capsys: pytest.CaptureFixture[str], models_dir: Path, data_dir: Path
) -> None:
    """What a technician runs before writing ``person_tiling`` into the site file: the
    Town Centre camera's setting (docs/perception.md) finds far people the plain run misses."""
    video = str(data_dir / STREET)
    base = (video, "--models", str(models_dir), "--fps", "2", "--tasks", "persons")
    code, plain, _ = run(capsys, *base)
    assert code == 0
    code, tiled, _ = run(
        capsys, *base, "--person-tiling", "on", "--tile", "352", "--person-threshold", "0.4"
    )
    assert code == 0 and [r["frame"] for r in tiled] == [r["frame"] for r in plain]
    counts = [(len(p["persons"]), len(t["persons"])) for p, t in zip(plain, tiled, strict=True)]
    print(f"\npersons per frame, plain / tiled: {counts}")
    assert sum(t for _, t in counts) >= sum(p for p, _ in counts) + 2 * len(counts)
    assert all(person["score"] >= 0.4 for rec in tiled for person in rec["persons"])


def test_corrupt_and_missing_inputs_are_reported_and_the_run_goes_on(
    capsys: pytest.CaptureFixture[str], models_dir: Path, tmp_path: Path
) -> None:
    garbage = tmp_path / "broken.jpg"
    garbage.write_bytes(bytes(range(256)) * 4)
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"\x00\x01garbage" * 100)
    good = tmp_path / "grey.png"
    cv2.imwrite(str(good), np.full((120, 160, 3), 127, np.uint8))
    missing = tmp_path / "nowhere.png"
    code, lines, err = run(
        capsys,
        str(garbage),
        str(good),
        str(broken_video),
        str(missing),
        "--models",
        str(models_dir),
        "--tasks",
        "persons",
    )
    assert code == 1
    assert [set(rec) for rec in lines[:1]] == [{"source", "error"}]
    assert lines[0]["source"] == str(garbage) and "cannot be decoded" in lines[0]["error"]
    check_record(lines[1])
    assert (lines[1]["width"], lines[1]["height"], lines[1]["persons"]) == (160, 120, [])
    assert lines[2] == {"source": str(broken_video), "error": lines[2]["error"]}
    assert lines[3]["source"] == str(missing) and "no such file" in lines[3]["error"]
    assert len(lines) == 4
    assert str(garbage) in err and str(broken_video) in err and str(missing) in err


def test_bad_options_are_clear_errors(
    capsys: pytest.CaptureFixture[str], models_dir: Path, tmp_path: Path
) -> None:
    image = tmp_path / "x.png"
    cv2.imwrite(str(image), np.zeros((10, 10, 3), np.uint8))
    assert main(["analyze", str(image), "--models", str(models_dir), "--tasks", "cars"]) == 2
    assert "unknown task" in capsys.readouterr().err
    assert main(["analyze", str(image), "--models", str(tmp_path / "empty")]) == 2
    assert "missing" in capsys.readouterr().err
    on = ("--person-tiling", "on")
    for options in (("--tile", "10", *on), ("--person-threshold", "1.5", *on)):
        assert main(["analyze", str(image), "--models", str(models_dir), *options]) == 2
        assert f"{options[0]}: " in capsys.readouterr().err
    # a tiling camera's score with tiling off: refused, as the site file refuses it
    assert (
        main(["analyze", str(image), "--models", str(models_dir), "--person-threshold", "0.4"]) == 2
    )
    assert "threshold set with mode off" in capsys.readouterr().err
    with pytest.raises(SystemExit) as refused:
        main(["analyze", str(image), "--person-tiling", "sometimes"])
    assert refused.value.code == 2 and "--person-tiling: invalid choice" in capsys.readouterr().err


def test_expand_paths_and_sampling(tmp_path: Path) -> None:
    for name in ("b.png", "a.MP4", "c.txt", "d.gif"):
        (tmp_path / name).write_bytes(b"")
    (tmp_path / "sub").mkdir()
    assert [p.name for p in expand_paths([tmp_path])] == ["a.MP4", "b.png", "d.gif"]
    clip = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter.fourcc(*"MJPG"), 24.0, (32, 24))
    for i in range(48):
        writer.write(np.full((24, 32, 3), i * 5, np.uint8))
    writer.release()
    picked = [(i, round(ts, 3)) for i, ts, _ in sample_video(clip, 5.0)]
    assert [i for i, _ in picked] == [0, 5, 10, 15, 20, 24, 29, 34, 39, 44]
    assert picked[5] == (24, 1.0)
    assert [i for i, _, _ in sample_video(clip, 100.0)] == list(range(48))


@pytest.mark.data
def test_bench_models_prints_a_row_per_model(
    capsys: pytest.CaptureFixture[str], models_dir: Path, data_dir: Path
) -> None:
    argv = ["bench", "models", "--models", str(models_dir), "--data", str(data_dir)]
    assert main([*argv, "--runs", "2"]) == 0
    text = capsys.readouterr().out
    out = text.splitlines()
    assert re.split(r" {2,}", out[1])[-1] == "licence"
    rows = {c[0]: c for c in (re.split(r" {2,}", line) for line in out[3:8])}
    assert list(rows) == ["yunet", "sface", "yolox_nano", "nanodet", "fire_smoke"]
    for cells in rows.values():
        assert cells[1] == "CPU" and float(cells[7]) > 0  # fps
        assert float(cells[6]) >= float(cells[4].split(" / ")[0])  # total >= inference median
    assert rows["yolox_nano"][2] == "690x388" and rows["sface"][2] == "1 face"
    assert rows["yunet"][8] == "MIT" and rows["fire_smoke"][8].startswith("!! UNCLEAR (")
    assert "!! fire_smoke: licence UNCLEAR (" in text and "Check before deploying." in text
    assert main([*argv, "--runs", "0"]) == 2
    assert "--runs 0" in capsys.readouterr().err


def test_demo_start_names_the_unclear_fire_model_licence(tmp_path: Path) -> None:
    missing = tmp_path / "no-data-here"
    argv = [sys.executable, "-m", "ringwatch", "demo", "--check", "--data", str(missing)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2  # the data folder is missing; the notice came first
    assert done.stdout.startswith("!! fire_smoke: licence UNCLEAR (")
    assert "Check before deploying." in done.stdout
