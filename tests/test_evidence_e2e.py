"""Evidence end to end: the real edge (``ringwatch edge run``, the person model on the Town
Centre clip, looping like a live camera) records intrusion clips while the hub is not there
(the link is cut), uploads them when ``ringwatch hub serve`` comes up, keeps the rest on disk
while the hub is SIGKILLed, and drains once it is back. Every clip the edge made reached the
hub once (the edge's uploaded count equals the hub's rows), the incident page plays one in
Chromium (``readyState`` and ``duration`` of the ``<video>``), and the signed export holds it.
Prints the figures docs/evidence.md quotes (clip sizes, drain time)."""

from __future__ import annotations

import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
import yaml

from ringwatch.contract.media import device_key
from ringwatch.hub.export import verify_export
from tests.services import Broker, free_port, wait_for
from tests.test_hub_crash import RINGWATCH, HubProcess

REPO = Path(__file__).resolve().parent.parent
CHROMIUM = "/usr/bin/chromium"
SITE, DEVICE, CAMERA = "evidence-e2e", "box-evidence", "street"
EVIDENCE_KEY = "e2e-evidence-key-not-for-production"
SECRET = "e2e-secret-not-default-1234"
ADMIN = ("admin", "admin-password-e2e")


def hub_files(tmp: Path, broker: Broker) -> tuple[Path, Path]:
    settings = {
        "database_url": f"sqlite:///{tmp / 'hub.sqlite3'}",
        "broker_url": broker.url,
        "jwt_secret": SECRET,
        "template_key": SECRET,
        "evidence_key": EVIDENCE_KEY,
        "media_dir": str(tmp / "hub-media"),
    }
    config = {
        "stations": [{"id": "st-e2e", "name": "E2E Station"}],
        "sites": [{"id": SITE, "name": "Town Centre", "station": "st-e2e",
                   "devices": [{"id": DEVICE, "cameras": [{"id": CAMERA}]}]}],
        "ingest": {"group": f"e2e-{uuid.uuid4().hex[:8]}", "worker": "e2e-14"},
    }  # fmt: skip
    (tmp / "hub.yaml").write_text(yaml.safe_dump(settings))
    (tmp / "hub-config.yaml").write_text(yaml.safe_dump(config))
    return tmp / "hub.yaml", tmp / "hub-config.yaml"


def edge_file(tmp: Path, broker: Broker, data_dir: Path, hub_port: int) -> Path:
    raw = yaml.safe_load((REPO / "configs/towncentre.yaml").read_text())
    raw.update(site=SITE, device=DEVICE, health_interval_s=2)
    raw["broker"]["url"] = broker.url
    raw["outbox"] = {"path": str(tmp / "edge/outbox.sqlite3"), "receipt_timeout_s": 3}
    cam = raw["cameras"][0]
    cam.update(source=str(data_dir / "video/towncentre_clip_example01.mp4"), loop=True,
               realtime=True, fps=5)  # fmt: skip
    cam["schedules"]["shop-hours"]["open"] = []  # closed whenever CI runs: intrusions
    key = tmp / "edge/upload.key"
    key.parent.mkdir(parents=True, exist_ok=True)
    key.write_text(device_key(EVIDENCE_KEY, SITE, DEVICE).hex())
    raw["clips"] = {
        "pre_roll_s": 2, "post_roll_s": 2, "max_s": 6, "queue_dir": str(tmp / "edge/media"),
        "hub_url": f"http://127.0.0.1:{hub_port}", "key_file": str(key), "retry_max_s": 2,
    }  # fmt: skip
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def edge_queue(tmp: Path) -> tuple[int, int]:
    """(clips waiting, items uploaded) from the edge's own queue file."""
    path = tmp / "edge/media/queue.sqlite3"
    if not path.exists():
        return 0, 0
    db = sqlite3.connect(path, timeout=5)
    try:
        waiting = db.execute("SELECT count(*) FROM media WHERE kind = 'clip'").fetchone()[0]
        row = db.execute("SELECT value FROM counters WHERE name = 'uploaded'").fetchone()
        return int(waiting), 0 if row is None else int(row[0])
    except sqlite3.OperationalError:
        return 0, 0  # the edge is still creating it
    finally:
        db.close()


def hub_media(tmp: Path) -> list[dict[str, Any]]:
    engine = sa.create_engine(f"sqlite:///{tmp / 'hub.sqlite3'}")
    try:
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, kind, size, frames FROM media_items"))
            return [dict(r._mapping) for r in rows]
    except sa.exc.OperationalError:
        return []  # not migrated yet
    finally:
        engine.dispose()


@pytest.mark.data
def test_intrusion_clip_survives_a_cut_link_and_a_hub_kill_plays_and_is_exported(
    broker: Broker, models_dir: Path, data_dir: Path, tmp_path: Path
) -> None:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"this test needs Debian's chromium at {CHROMIUM} (apt-get install)")
    settings, config = hub_files(tmp_path, broker)
    port = free_port()
    env = {**os.environ, "RINGWATCH_HUB_NEW_PASSWORD": ADMIN[1]}
    subprocess.run([str(RINGWATCH), "hub", "create-user", "--settings", str(settings),
                    "--username", ADMIN[0], "--role", "admin"], env=env, check=True,
                   capture_output=True, timeout=60)  # fmt: skip
    hub = HubProcess(settings, config, port, tmp_path)
    site = edge_file(tmp_path, broker, data_dir, port)
    cmd = [sys.executable, "-m", "ringwatch", "edge", "run", "-c", str(site)]
    with (tmp_path / "edge.log").open("wb") as log:
        edge = subprocess.Popen([*cmd, "--models-dir", str(models_dir)], cwd=tmp_path,
                                stdout=log, stderr=subprocess.STDOUT)  # fmt: skip
    try:
        # 1. The link is cut (no hub): clips are recorded and wait on the edge's disk.
        wait_for(lambda: edge_queue(tmp_path)[0] >= 2, 120, "two clips queued on the edge")
        # 2. The hub comes up: the queue drains.
        hub.start()
        wait_for(lambda: any(m["kind"] == "clip" for m in hub_media(tmp_path)), 60, "a clip")
        # 3. The hub is killed; clips keep coming and stay queued; it comes back.
        hub.kill()
        killed = len(hub_media(tmp_path))
        wait_for(lambda: edge_queue(tmp_path)[0] >= 1, 60, "a clip queued while the hub is down")
        hub.start()
        back = time.monotonic()
        wait_for(lambda: edge_queue(tmp_path)[0] == 0, 60, "the edge queue to drain")
        drain_s = time.monotonic() - back
        assert len(hub_media(tmp_path)) > killed
        edge.send_signal(signal.SIGTERM)
        assert edge.wait(60) == 0, (tmp_path / "edge.log").read_text()[-3000:]
        _, uploaded = edge_queue(tmp_path)
        waiting_at_exit = edge_queue(tmp_path)[0]  # the clip being recorded at SIGTERM
        media = hub_media(tmp_path)
        assert uploaded == len(media), "every uploaded item is on the hub, once"
        clips = [m for m in media if m["kind"] == "clip"]
        sizes = sorted(m["size"] for m in clips)
        print(f"\nclips on the hub: {len(clips)}, sizes {sizes[0]}-{sizes[-1]} bytes, "
              f"frames {sorted(m['frames'] for m in clips)}; snapshots "
              f"{len(media) - len(clips)}; drain after the hub came back {drain_s:.1f} s; "
              f"left queued at SIGTERM: {waiting_at_exit}")  # fmt: skip
        _check_browser_and_export(f"http://127.0.0.1:{port}", tmp_path)
    finally:
        if edge.poll() is None:
            edge.kill()
        hub.stop()


def _check_browser_and_export(url: str, tmp: Path) -> None:
    from playwright.sync_api import expect, sync_playwright

    res = httpx.post(f"{url}/api/v1/login/access-token",
                     data={"username": ADMIN[0], "password": ADMIN[1]})  # fmt: skip
    auth = {"Authorization": f"Bearer {res.json()['access_token']}"}
    incidents = httpx.get(f"{url}/api/v1/incidents?kind=intrusion", headers=auth).json()
    with_clips = []
    for inc in incidents:
        items = httpx.get(f"{url}/api/v1/incidents/{inc['id']}/media", headers=auth).json()
        if any(i["kind"] == "clip" for i in items):
            with_clips.append(inc["id"])
    assert with_clips, f"no intrusion incident shows a clip: {incidents}"
    incident_id = with_clips[0]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
        try:
            page = browser.new_page()
            errors: list[str] = []
            page.on("pageerror", lambda exc: errors.append(str(exc)))
            page.goto(f"{url}/")
            page.fill("input[name=username]", ADMIN[0])
            page.fill("input[name=password]", ADMIN[1])
            page.click("#login button[type=submit]")
            expect(page.locator("#board")).to_be_visible()
            page.goto(f"{url}/#/incident/{incident_id}")
            video = page.locator("#media video.clip").first
            expect(video).to_be_visible(timeout=15_000)
            page.wait_for_function(
                "() => { const v = document.querySelector('#media video.clip');"
                " return v && v.readyState >= 2 && v.duration > 0; }",
                timeout=15_000,
            )
            state = video.evaluate("v => [v.readyState, v.duration, v.videoWidth]")
            assert state[0] >= 2 and state[1] > 0 and state[2] > 0, state
            shots = REPO / "artifacts" / "screenshots"
            shots.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shots / "evidence-incident-clip.png"), full_page=True)
            assert not errors, errors
        finally:
            browser.close()
    export = httpx.get(f"{url}/api/v1/incidents/{incident_id}/export", headers=auth, timeout=60)
    assert export.status_code == 200, export.text
    names = zipfile.ZipFile(io.BytesIO(export.content)).namelist()
    assert any(n.startswith("media/clip-") and n.endswith(".mp4") for n in names), names
    command = [str(RINGWATCH), "hub", "export-key", "--settings", str(tmp / "hub.yaml")]
    key = subprocess.run(command, capture_output=True, check=True, timeout=60)
    assert verify_export(export.content, key.stdout).ok
