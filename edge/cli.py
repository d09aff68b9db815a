"""``ringwatch edge ...``: the technician's commands for a camera box.

- ``validate -c FILE``: the site config, checked.
- ``check -c FILE``: config, each camera (resolution, fps, codec), models, broker; a table,
  and a non-zero exit with the reasons when anything fails.
- ``snapshot -c FILE CAMERA -o x.jpg``: one frame, privacy masks blurred, zones drawn.
- ``run -c FILE``: the agent, until SIGINT/SIGTERM.
- ``bench -c FILE --seconds 30 [--copies N]``: analysed fps and CPU per camera, no broker.
"""

from __future__ import annotations

import argparse
import signal
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ringwatch.configfile import redact_url
from ringwatch.edge.config import CameraConfig, SiteConfig, load_site_config
from ringwatch.errors import ConfigError, InputError, RingwatchError
from ringwatch.table import render_table

if TYPE_CHECKING:
    from ringwatch.edge.capture import Frame, FrameSource

EDGE_EXAMPLES = """examples:
  ringwatch edge validate -c site.yaml        config, every key and every camera source
  ringwatch edge check -c site.yaml           also opens each camera, loads models, reaches broker
  ringwatch edge snapshot -c site.yaml gate -o gate.jpg
  ringwatch edge run -c site.yaml             until Ctrl-C / SIGTERM
  ringwatch edge run -c site.yaml --once      replay recordings once, then stop
  ringwatch edge bench -c site.yaml --seconds 30 --copies 4
  ringwatch edge homeassistant -c site.yaml   Home Assistant discovery for the sheds"""


def register(sub: Any) -> None:
    parser = sub.add_parser(
        "edge",
        help="edge agent commands",
        description="The technician's commands for a camera box.",
        epilog=EDGE_EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    esub = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    p = esub.add_parser("validate", help="validate an edge site config file")
    _config_arg(p)
    p.set_defaults(func=_validate)
    p = esub.add_parser("check", help="validate config, probe cameras, load models, reach broker")
    _config_arg(p)
    _models_arg(p)
    p.add_argument("--broker-timeout", type=float, default=5.0, help="seconds to connect")
    p.set_defaults(func=_check)
    p = esub.add_parser("snapshot", help="one frame of a camera with masks and zones drawn")
    _config_arg(p)
    p.add_argument("camera", help="camera id")
    p.add_argument("-o", "--output", type=Path, required=True, help="JPEG file to write")
    p.set_defaults(func=_snapshot)
    p = esub.add_parser("run", help="run the agent until SIGINT/SIGTERM")
    _config_arg(p)
    _models_arg(p)
    p.add_argument(
        "--once",
        action="store_true",
        help="play video files once (no looping) and stop when every one has ended",
    )
    p.set_defaults(func=_run)
    p = esub.add_parser(
        "homeassistant", help="publish (or --print) Home Assistant discovery for the sheds"
    )
    _config_arg(p)
    p.add_argument("--print", action="store_true", help="print the messages, publish nothing")
    p.add_argument("--broker-timeout", type=float, default=5.0, help="seconds to connect")
    p.set_defaults(func=_homeassistant)
    p = esub.add_parser("bench", help="analysed fps and CPU per camera (no broker)")
    _config_arg(p)
    _models_arg(p)
    p.add_argument("--seconds", type=float, default=30.0, help="how long to run")
    p.add_argument("--copies", type=int, default=0, help="run N copies of the first camera")
    p.add_argument("--unpaced", action="store_true", help="analyse every frame, flat out")
    p.add_argument(
        "--reference",
        action="store_true",
        help="first camera unpaced vs a naive OpenCV pipeline, alternating; prints the ratio",
    )
    p.add_argument("--rounds", type=int, default=2, help="alternations for --reference")
    p.set_defaults(func=_bench)


def _config_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("-c", "--config", type=Path, required=True, help="site YAML file")


def _models_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", type=Path, default=None, help="installed models folder")


def _models_dir(args: argparse.Namespace, cfg: SiteConfig) -> Path:
    from ringwatch.models.manifest import default_models_dir

    return args.models_dir or cfg.models.dir or default_models_dir()


def _validate(args: argparse.Namespace) -> int:
    cfg = load_site_config(args.config)
    checked = [(cam, _check_source(cam)) for cam in cfg.cameras]
    rows = [
        (
            cam.id,
            cam.role.value,
            redact_url(cam.source),
            result,
            f"{cam.fps:g}",
            ",".join(z.role.value for z in cam.zones) or "-",
            len(cam.lines),
            len(cam.masks),
        )
        for cam, (_, result) in checked
    ]
    problems = [
        f"camera {cam.id}: {redact_url(cam.source)}: {result.removeprefix('FAIL: ')}"
        for cam, (ok, result) in checked
        if not ok
    ]
    verdict = "OK" if not problems else f"{len(problems)} problem(s)"
    print(f"{args.config}: site {cfg.site}, device {cfg.device}: {verdict}")
    print(
        render_table(
            ("camera", "role", "source", "source check", "fps", "zones", "lines", "masks"), rows
        )
    )
    for line in problems:
        print(line)
    return 1 if problems else 0


def _check_source(cam: CameraConfig) -> tuple[bool, str]:
    """A video file must exist and decode; a stream's address is only checked for form here
    (``edge check`` connects to it)."""
    import os

    from ringwatch.edge.capture import probe

    # a broken file is reported in the table, not in FFmpeg's and OpenCV's own words
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")
    os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
    source = cam.source.removeprefix("file://")
    if source.startswith("usb:"):
        return True, "not opened (edge check does)"
    if "://" in source:
        return True, "not probed (edge check does)"
    if not Path(source).is_file():
        return False, "FAIL: file not found"
    try:
        info = probe(source)
    except (InputError, OSError, ValueError):
        return False, "FAIL: cannot decode"
    return True, f"decodes: {info.width}x{info.height} {info.codec}"


# -- check --------------------------------------------------------------------------------


def _check(args: argparse.Namespace) -> int:
    rows: list[tuple[str, str, str]] = []
    try:
        cfg = load_site_config(args.config)
    except ConfigError as exc:
        print(render_table(("check", "result", "detail"), [("config", "FAIL", str(exc))]))
        return 1
    rows.append(("config", "ok", f"site {cfg.site}, device {cfg.device}"))
    rows += [_probe_camera(cam) for cam in cfg.cameras]
    models_row, notes = _check_models(cfg, _models_dir(args, cfg))
    rows.append(models_row)
    rows.append(_check_broker(cfg, args.broker_timeout))
    print(render_table(("check", "result", "detail"), rows))
    for note in notes:
        print(note)
    failed = [r for r in rows if r[1] != "ok"]
    if failed:
        print(f"{len(failed)} check(s) failed: " + ", ".join(r[0] for r in failed))
    return 1 if failed else 0


def _probe_camera(cam: CameraConfig) -> tuple[str, str, str]:
    from ringwatch.edge.capture import probe

    try:
        info = probe(cam.source)
    except (InputError, OSError, ValueError) as exc:
        return (f"camera {cam.id}", "FAIL", str(exc))
    detail = f"{info.width}x{info.height}, {info.fps:g} fps, {info.codec}; analyse {cam.fps:g} fps"
    return (f"camera {cam.id}", "ok", detail)


def _check_models(cfg: SiteConfig, models_dir: Path) -> tuple[tuple[str, str, str], list[str]]:
    """The models row (each file with its licence) and the unclear-licence notes."""
    from ringwatch.edge.agent import load_analyzers
    from ringwatch.models.licences import licence_notes
    from ringwatch.models.manifest import load_manifest

    try:
        _, files = load_analyzers(cfg, models_dir)
    except RingwatchError as exc:
        return ("models", "FAIL", str(exc)), []
    by_file = {m.file: m for m in load_manifest().models}
    used = [by_file[f.name] for f in files]
    listed = [f"{f.name} ({e.licence_label})" for f, e in zip(files, used, strict=True)]
    return ("models", "ok", f"{models_dir}: " + ", ".join(listed)), licence_notes(used)


def _check_broker(cfg: SiteConfig, timeout: float) -> tuple[str, str, str]:
    from ringwatch.edge.uplink import probe_client

    try:
        client = probe_client(cfg.broker, cfg.site, cfg.device)
        client.start()
    except RingwatchError as exc:
        return ("broker", "FAIL", str(exc))
    try:
        if client.wait_connected(timeout):
            return ("broker", "ok", cfg.broker.url)
        why = client.fatal_error or f"no connection within {timeout:g} s"
        return ("broker", "FAIL", f"{cfg.broker.url}: {why}")
    except RingwatchError as exc:  # e.g. refused credentials
        return ("broker", "FAIL", f"{cfg.broker.url}: {exc}")
    finally:
        client.close()


# -- snapshot -----------------------------------------------------------------------------


def _snapshot(args: argparse.Namespace) -> int:
    import cv2

    from ringwatch.edge.annotate import ZoneAnnotator
    from ringwatch.edge.capture import open_source
    from ringwatch.edge.privacy import PrivacyMask

    cfg = load_site_config(args.config)
    cam = next((c for c in cfg.cameras if c.id == args.camera), None)
    if cam is None:
        known = ", ".join(c.id for c in cfg.cameras)
        raise ConfigError(f"{args.config}: no camera {args.camera!r} (cameras: {known})")
    source = open_source(cam.source, realtime=False)
    try:
        frame = _first_frame(source, timeout=10.0)
    finally:
        source.close()
    if frame is None:
        why = source.status().error
        detail = f" ({redact_url(why)})" if why else ""
        raise InputError(f"camera {cam.id}: no frame from {redact_url(cam.source)}{detail}")
    h, w = frame.image.shape[:2]
    masked = PrivacyMask.for_frame(cam.masks, (w, h)).apply(frame.image)
    drawn = ZoneAnnotator().annotate(masked, cam.camera_zones())
    if not cv2.imwrite(str(args.output), drawn):
        raise InputError(f"cannot write {args.output}")
    print(f"{args.output}: {w}x{h}, camera {cam.id}, {len(cam.zones)} zones drawn")
    return 0


def _first_frame(source: FrameSource, timeout: float) -> Frame | None:
    """The first frame, giving up early when a stream has failed to open three times."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        frame = source.read(timeout=0.5)
        if frame is not None or source.status().reconnects >= 3:
            return frame
    return None


# -- run ----------------------------------------------------------------------------------


def _run(args: argparse.Namespace) -> int:
    import logging

    from ringwatch.edge.agent import run_site

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    cfg = load_site_config(args.config)
    if args.once:
        cfg = _play_once(cfg)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        logging.getLogger("ringwatch.edge").info("signal %d: stopping", signum)
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    run_site(cfg, _models_dir(args, cfg), stop, once=args.once)
    return 0


def _play_once(cfg: SiteConfig) -> SiteConfig:
    """The config with every video file played once; ConfigError when there is none."""
    files = [c for c in cfg.cameras if "://" not in c.source and not c.source.startswith("usb:")]
    if not files:
        raise ConfigError("--once needs at least one camera whose source is a video file")
    cams = [c.model_copy(update={"loop": False}) for c in cfg.cameras]
    return cfg.model_copy(update={"cameras": cams})


# -- home assistant -----------------------------------------------------------------------


def _homeassistant(args: argparse.Namespace) -> int:
    import json

    from ringwatch.edge.homeassistant import discovery_messages, publish_discovery
    from ringwatch.edge.uplink import probe_client

    cfg = load_site_config(args.config)
    messages = discovery_messages(cfg)
    if not messages:
        raise ConfigError(f"{args.config}: no home_assistant section with shed bays (opt-in)")
    if args.print:
        for m in messages:
            print(m.topic, json.dumps(m.config, ensure_ascii=False))
        return 0
    client = probe_client(cfg.broker, cfg.site, cfg.device)
    client.start()
    try:
        done = publish_discovery(client, cfg, args.broker_timeout)
    finally:
        client.close()
    print(f"{done} of {len(messages)} discovery messages published (retained) to {cfg.broker.url}")
    return 0 if done == len(messages) else 1


# -- bench --------------------------------------------------------------------------------


def _bench(args: argparse.Namespace) -> int:
    from ringwatch.edge.bench import compare, print_run, run_agent, with_copies

    cfg = with_copies(load_site_config(args.config), args.copies)
    models_dir = _models_dir(args, cfg)
    if args.reference:
        compare(cfg, models_dir, args.seconds, args.rounds)
        return 0
    paced = not args.unpaced
    print_run(cfg, run_agent(cfg, models_dir, args.seconds, paced), paced)
    return 0
