"""The technician's and installer's tools: `edge validate`, `edge snapshot`, `edge run --once`,
`models install`, `--help` and progress output."""

from __future__ import annotations

import io
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from ringwatch.cli import build_parser, main
from tests.conftest import MODELS_SRC
from tests.services import Broker, free_port, wait_for

REPO = Path(__file__).resolve().parent.parent
PASSWORD = "hunter2-secret"


def _site(tmp_path: Path, source: str, **camera: object) -> Path:
    raw = yaml.safe_load((REPO / "configs/towncentre.yaml").read_text())
    raw["cameras"][0]["source"] = source
    raw["cameras"][0].update(camera)
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


# -- edge validate ----------------------------------------------------------------------------


@pytest.mark.data
def test_validate_checks_that_each_video_file_exists_and_decodes(
    data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = _site(tmp_path, str(data_dir / "video/towncentre_clip_example01.mp4"))
    assert main(["edge", "validate", "-c", str(good)]) == 0
    out = capsys.readouterr().out
    assert ": OK" in out.splitlines()[0] and "decodes: 690x388 h264" in out

    missing = _site(tmp_path, str(tmp_path / "gone.mp4"))
    assert main(["edge", "validate", "-c", str(missing)]) == 1
    out = capsys.readouterr().out
    assert "1 problem(s)" in out.splitlines()[0]
    assert f"camera street: {tmp_path / 'gone.mp4'}: file not found" in out

    junk = tmp_path / "junk.mp4"
    junk.write_bytes(bytes(range(256)) * 40)
    assert main(["edge", "validate", "-c", str(_site(tmp_path, str(junk)))]) == 1
    assert f"camera street: {junk}: cannot decode" in capsys.readouterr().out


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    return capsys.readouterr().err


def test_validate_refuses_an_unknown_url_scheme_without_showing_the_password(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = _site(tmp_path, f"rtps://admin:{PASSWORD}@10.0.0.5/stream1")
    text = _error(["edge", "validate", "-c", str(typo)], capsys)
    assert "cameras[0].source: unknown scheme rtps:// in rtps://admin:***@10.0.0.5/stream1" in text
    assert "did you mean rtsps:// or rtsp://?" in text and PASSWORD not in text


def test_unknown_keys_get_the_closest_known_one_and_patterns_are_said_in_words(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = _site(tmp_path, "rtsp://10.0.0.5/s", defualt_ring="inner", id="gate 1")
    text = _error(["edge", "validate", "-c", str(path)], capsys)
    assert "cameras[0].defualt_ring: unknown key (did you mean default_ring?)" in text
    assert "cameras[0].id: expected an id of 1-64 letters, digits" in text
    assert "pattern" not in text and "^" not in text


@pytest.mark.parametrize("scheme", ["rtsp", "rtsps", "http", "https"])
def test_validate_lists_streams_with_their_password_hidden(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], scheme: str
) -> None:
    path = _site(tmp_path, f"{scheme}://admin:{PASSWORD}@10.0.0.5:8554/live")
    assert main(["edge", "validate", "-c", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{scheme}://admin:***@10.0.0.5:8554/live" in out and PASSWORD not in out
    assert "not probed (edge check does)" in out


def test_snapshot_error_hides_the_password_and_gives_up_quickly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import time

    path = _site(tmp_path, f"rtsp://admin:{PASSWORD}@127.0.0.1:{free_port()}/live")
    started = time.monotonic()
    argv = ["edge", "snapshot", "-c", str(path), "street", "-o", str(tmp_path / "x.jpg")]
    text = _error(argv, capsys)
    assert "error: camera street: no frame from rtsp://admin:***@127.0.0.1:" in text
    assert PASSWORD not in text
    assert time.monotonic() - started < 9  # the stream refused three times, not a 10 s wait


# -- models install ---------------------------------------------------------------------------


def test_models_install_from_a_missing_folder_fails_before_copying(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["models", "install", "--from", "/nonexistent", "--dir", str(tmp_path / "m")]
    assert main(argv) == 2
    captured = capsys.readouterr()
    assert "ringwatch: error: models source /nonexistent does not exist" in captured.err
    assert "installed" not in captured.out and not (tmp_path / "m").exists()


def test_models_install_verifies_files_already_there_against_the_source(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    if not MODELS_SRC.is_dir():
        pytest.skip(f"{MODELS_SRC} is absent")
    source = tmp_path / "src"
    source.mkdir()
    shutil.copy(MODELS_SRC / "face_detection_yunet_2023mar.onnx", source)
    argv = ["models", "install", "--from", str(source), "--dir", str(tmp_path / "m"), "yunet"]
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("installed: ")
    assert main(argv) == 0
    assert capsys.readouterr().out.startswith("already installed, verified: ")
    (source / "face_detection_yunet_2023mar.onnx").write_bytes(b"a different file")
    assert main(argv) == 2
    assert "fails its checksum" in capsys.readouterr().err
    (source / "face_detection_yunet_2023mar.onnx").unlink()
    assert main(argv) == 2
    assert "face_detection_yunet_2023mar.onnx not found in" in capsys.readouterr().err
    assert main([*argv[:-1], "yunett"]) == 2
    assert "unknown model(s) yunett" in capsys.readouterr().err


# -- help and progress ------------------------------------------------------------------------


def test_help_has_examples_and_no_developer_notes() -> None:
    text = build_parser().format_help()
    assert "examples:" in text and "ringwatch demo" in text and "edge validate" in text
    assert "heavy imports" not in text and "registers its own" not in text
    done = subprocess.run(
        [sys.executable, "-m", "ringwatch", "edge", "--help"], capture_output=True, text=True
    )
    assert done.returncode == 0 and "edge run -c site.yaml --once" in done.stdout


def test_progress_prints_plain_lines_off_a_terminal_and_a_bar_on_one() -> None:
    from ringwatch.progress import progress

    plain = io.StringIO()
    with progress("frames of clip.mp4", total=20, unit="frames", stream=plain) as advance:
        for _ in range(20):
            advance(1)
    lines = plain.getvalue().splitlines()
    assert lines[0] == "frames of clip.mp4: 2/20 frames (10%)"
    assert lines[-1].startswith("frames of clip.mp4: 20/20 frames (100%) in ")
    assert len(lines) == 10  # one per tenth, not one per frame

    tty = io.StringIO()
    with progress("models", total=4, unit="files", stream=tty, terminal=True) as advance:
        advance(4)
    drawn = tty.getvalue()
    assert "\x1b[" in drawn and "4/4" in drawn and "━" in drawn


# -- edge run --once ---------------------------------------------------------------------------


@pytest.mark.data
def test_edge_run_once_stops_by_itself_at_the_end_of_the_recording(
    broker: Broker, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    from ringwatch.contract.messages import Event, Receipt, decode, encode
    from ringwatch.contract.topics import TopicKind, receipt_topic, topic_filter
    from ringwatch.edge.mqtt import Message, MqttClient

    # loop: true on purpose: --once plays it once all the same
    config = _site(tmp_path, str(data_dir / "video/towncentre_clip_example01.mp4"), loop=True)
    raw = yaml.safe_load(config.read_text())
    raw["broker"]["url"] = broker.url
    raw["outbox"]["path"] = str(tmp_path / "outbox.sqlite3")
    raw["cameras"][0]["schedules"]["shop-hours"]["open"] = []
    config.write_text(yaml.safe_dump(raw))
    site, device = raw["site"], raw["device"]
    events: set[str] = set()
    hub = MqttClient(broker.url, f"test-hub-once-{free_port()}")

    def on_event(m: Message) -> None:
        event = decode(Event, m.payload)
        events.add(event.event_id)
        receipt = Receipt(
            site=site, device=device, event_ids=[event.event_id], sent_at=event.captured_at
        )
        hub.publish(receipt_topic(site, device), encode(receipt))

    hub.subscribe(topic_filter(TopicKind.EVENTS, site, device), on_event)
    hub.start()
    assert hub.wait_connected(5)
    argv = [sys.executable, "-m", "ringwatch", "edge", "run", "-c", str(config), "--once"]
    proc = subprocess.Popen([*argv, "--models-dir", str(models_dir)], cwd=tmp_path)
    try:
        assert proc.wait(120) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        hub.close()
    wait_for(lambda: len(events) > 0, 1, "events from the replay")
    from ringwatch.edge.outbox import Outbox

    with Outbox(tmp_path / "outbox.sqlite3", 1000) as outbox:
        assert outbox.depth() == 0  # it waited for the hub's receipts before stopping


@pytest.mark.data
def test_analyze_a_video_reports_progress_on_stderr_and_keeps_stdout_json(
    models_dir: Path, data_dir: Path
) -> None:
    import json

    clip = data_dir / "video/towncentre_clip_example01.mp4"
    argv = [sys.executable, "-m", "ringwatch", "analyze", str(clip), "--fps", "2"]
    argv += ["--tasks", "persons", "--models", str(models_dir)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    records = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(records) == 9  # 4.1 s at 2 fps
    progress_lines = [ln for ln in done.stderr.splitlines() if ln.startswith(f"analyze {clip}")]
    assert progress_lines[-1].startswith(f"analyze {clip}: 9/9 frames (100%) in ")
