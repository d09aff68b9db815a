"""The zone editor in a real browser (Playwright driving Debian's /usr/bin/chromium) against
a real edge: `ringwatch edge run` plays short_hamilton_clip.mp4 in a loop (persons only,
3 fps) into a private Mosquitto, and the hub runs in-process under uvicorn on a free port
with its MQTT ingest and zone link.

- Draw an inner-ring polygon over the bottom of the frame, where the people in the clip
  stand and walk (their boxes' bottom-centres are at y ~ 0.93-0.99), save, see "accepted",
  and see the next zone events from the camera carry the new zone and the inner ring.
- A polygon with two points is refused in the page with the validation message.
- With the edge stopped, a save shows "pending"; started again, the edge applies it and the
  page shows "accepted".

Each test saves a screenshot to artifacts/screenshots/.
"""

from __future__ import annotations

import datetime as dt
import json
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.inventory import HubConfig
from tests.hub_fixtures import create_admin, settings
from tests.services import Broker, free_port, wait_for
from tests.test_dashboard_browser import untranslated

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SITE, DEVICE, CAMERA = "campus-north", "box-gate-01", "gate"
ADMIN = ("admin", "admin-password")
SCHEDULES = {
    "school-hours": {
        "timezone": "Europe/London",
        "open": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "07:30", "end": "17:00"}],
    }
}
WALKWAY = [(0.02, 0.55), (0.98, 0.55), (0.98, 0.995), (0.02, 0.995)]


def hub_config(tag: str) -> HubConfig:
    return HubConfig.model_validate(
        {
            "stations": [{"id": "st-north", "name": "North"}],
            "sites": [
                {
                    "id": SITE,
                    "name": "North School",
                    "station": "st-north",
                    # "yard" is registered on the hub but the box has no such camera
                    "devices": [{"id": DEVICE, "cameras": [{"id": CAMERA}, {"id": "yard"}]}],
                }
            ],
            "ingest": {"group": f"g{tag}", "worker": f"w{tag}"},
        }
    )


def edge_config(tmp: Path, data: Path, broker_url: str) -> Path:
    raw = yaml.safe_load((REPO / "configs/site-campus.yaml").read_text())
    raw.update(site=SITE, device=DEVICE, health_interval_s=1)
    raw["broker"]["url"] = broker_url
    raw["outbox"]["path"] = str(tmp / "var" / "outbox.sqlite3")
    gate = raw["cameras"][0]
    gate.update(
        source=str(data / "faces/watchlist_demo/short_hamilton_clip.mp4"),
        loop=True,
        fps=3,
        tasks=["persons"],
        default_ring="outer",
        zones=[{"id": "road", "role": "outer", "polygon": [[0, 0], [1, 0], [1, 1], [0, 1]]}],
        lines=[],
        masks=[],
    )
    gate.pop("schedules", None)
    raw["cameras"] = [gate]
    path = tmp / "site.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


@dataclass
class Env:
    url: str
    hub: Hub
    browser: Browser
    command: list[str]
    workdir: Path
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def start_edge(self) -> None:
        self.procs.append(subprocess.Popen(self.command, cwd=self.workdir))

    def stop_edge(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.procs.clear()

    def online(self) -> bool | None:
        assert self.hub.zones is not None
        return self.hub.zones.online(SITE, DEVICE)

    def zone_events(
        self, since: dt.datetime, until: dt.datetime | None = None
    ) -> list[tuple[str | None, str | None]]:
        until = until or dt.datetime.now(dt.UTC) + dt.timedelta(days=1)
        with self.hub.sessions() as session:
            rows = session.execute(
                sa.select(t.Event.zone_id, t.Event.ring).where(
                    t.Event.camera_id == CAMERA,
                    t.Event.kind == "zone",
                    t.Event.captured_at > since,
                    t.Event.captured_at < until,
                )
            ).all()
        return [(z, r) for z, r in rows]

    def stored_zones(self) -> dict[str, Any]:
        path = self.workdir / "var" / "zones" / f"{CAMERA}.zones.json"
        data: dict[str, Any] = json.loads(path.read_text()) if path.exists() else {}
        return data


def _serve(app: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hub-uvicorn", daemon=True)
    thread.start()
    wait_for(lambda: bool(server.started), 30, "uvicorn")
    return server, thread


@pytest.fixture(scope="module")
def env(
    tmp_path_factory: pytest.TempPathFactory, broker: Broker, models_dir: Path, data_dir: Path
) -> Iterator[Env]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("zone-editor")
    db = f"sqlite:///{tmp / 'hub.sqlite3'}"
    create_admin(db)
    app = create_app(settings(db, broker.url), hub_config(uuid.uuid4().hex[:8]))
    port = free_port()
    server, thread = _serve(app, port)
    command = [sys.executable, "-m", "ringwatch", "edge", "run"]
    command += ["-c", str(edge_config(tmp, data_dir, broker.url)), "--models-dir", str(models_dir)]
    env = None
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                env = Env(f"http://127.0.0.1:{port}", app.state.hub, browser, command, tmp)
                env.start_edge()
                yield env
            finally:
                browser.close()
    finally:
        if env is not None:
            env.stop_edge()
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def page(env: Env) -> Iterator[Page]:
    context = env.browser.new_context(viewport={"width": 1500, "height": 1000})
    # These tests read the English texts (the hub's default console language is zh-CN).
    context.add_init_script("localStorage.setItem('ringwatch.language', 'en')")
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def open_editor(page: Page, env: Env, camera: str = CAMERA) -> None:
    page.goto(f"{env.url}/")
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    page.click("#login button[type=submit]")
    expect(page.locator("#board")).to_be_visible()
    page.click("nav a[href='zones.html']")
    page.select_option("#camera", f"{SITE}/{camera}")
    if camera == CAMERA:
        expect(page.locator("#snapshot")).to_have_attribute("data-loaded", "yes", timeout=20_000)


def draw(page: Page, tool: str, points: list[tuple[float, float]]) -> None:
    page.click(f"#tool-{tool}")
    for x, y in points:
        box = page.locator("#overlay").bounding_box()
        assert box is not None
        page.mouse.click(box["x"] + x * box["width"], box["y"] + y * box["height"])
    if tool != "line":
        page.click("#finish")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.data
def test_the_editor_opens_on_the_running_zones_in_chinese(env: Env) -> None:
    """zh-CN: before the hub saves anything, the editor shows what the device runs (its
    site file's road ring), says so in Chinese, and no catalogue key is missing."""
    wait_for(lambda: env.online() is True, 60, "the edge online")
    context = env.browser.new_context(viewport={"width": 1500, "height": 1000})
    context.add_init_script("localStorage.setItem('ringwatch.language', 'zh-CN')")
    page = context.new_page()
    try:
        open_editor(page, env)
        expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
        expect(page.locator("#running-msg")).to_have_text(
            "中心尚未保存：显示设备当前运行的区域（1 个区域、0 条线、0 个遮罩，来自其站点文件）。"
            "保存后即由中心管理。"
        )
        expect(page.locator("polygon.zone-shape[data-id=road]")).to_have_count(1)
        expect(page.locator(".zone-row[data-id=road] .zone-role")).to_have_value("outer")
        missing = page.evaluate("[...window.__i18nMissing || []]")
        assert not missing, f"catalogue keys missing in zh-CN: {missing}"
        words = untranslated(page, frozenset({"road", "loiter"}))  # a zone id; a field name
        assert not words, f"English on the zh-CN zone editor: {words}"
        shot(page, "zone_editor_running_zones_zh")
    finally:
        # The console saves the language per user: give the English tests theirs back.
        page.evaluate(
            """async () => {
              const { api } = await import('./api.js');
              await api('/dashboard/preferences', {method: 'PUT', body: {language: 'en'}});
            }"""
        )
        context.close()


@pytest.mark.data
def test_draw_an_inner_ring_save_accepted_and_events_carry_it(page: Page, env: Env) -> None:
    start = dt.datetime.now(dt.UTC)
    wait_for(lambda: env.online() is True, 60, "the edge online")
    wait_for(lambda: ("road", "outer") in env.zone_events(start), 90, "events in the outer ring")
    open_editor(page, env)
    expect(page.locator("#zone-status")).to_contain_text("No zones saved on the hub")
    # the editor starts from what the camera runs (its device says so with the snapshot)
    expect(page.locator("#running-msg")).to_contain_text(
        "showing the zones the device runs now (1 zone(s), 0 line(s), 0 mask(s),"
        " from its site file)"
    )
    expect(page.locator("polygon.zone-shape[data-id=road]")).to_have_count(1)
    shot(page, "zone_editor_running_zones")

    # two points: refused by the hub's validation (the contract models), shown in the page
    page.select_option("#new-role", "inner")
    draw(page, "zone", [(0.2, 0.3), (0.6, 0.4)])
    page.click("#save")
    expect(page.locator("#zone-status")).to_have_attribute("data-state", "invalid")
    expect(page.locator("#zone-errors")).to_contain_text(
        "zones[1].polygon: need >= 3 points, got 2"  # after the running road zone
    )
    shot(page, "zone_editor_two_points_refused")
    page.click(".zone-row[data-id=inner-1] .delete")

    # start from the box's own site file (its local zones), then draw the walkway: an
    # inner-ring polygon over the bottom of the frame
    page.set_input_files("#site-file", env.workdir / "site.yaml")
    expect(page.locator("#site-file-msg")).to_contain_text("Loaded 1 zone(s), 0 line(s)")
    expect(page.locator("polygon.zone-shape[data-id=road]")).to_have_count(1)
    page.fill("#schedules", json.dumps(SCHEDULES))
    page.locator("#schedules").blur()
    draw(page, "zone", WALKWAY)
    row = page.locator(".zone-row[data-id=inner-1]")
    row.locator(".zone-id").fill("walkway")
    expect(row.locator(".zone-role")).to_have_value("inner")
    row.locator(".zone-schedule").select_option("school-hours")
    saved = dt.datetime.now(dt.UTC)
    page.click("#save")
    expect(page.locator("#zone-status")).to_contain_text("accepted", timeout=30_000)
    accepted = dt.datetime.now(dt.UTC)
    expect(page.locator("#preview")).to_be_visible()
    expect(page.locator("#running-msg")).to_have_text(
        "The device runs these zones (pushed from the hub).", timeout=20_000
    )
    expect(page.locator("polygon.zone-shape[data-id=walkway]")).to_have_count(1)
    shot(page, "zone_editor_accepted")

    stored = env.stored_zones()  # the edge persisted it
    assert [(z["id"], z["role"]) for z in stored["zones"]] == [
        ("road", "outer"),
        ("walkway", "inner"),
    ]
    assert stored["zones"][1]["schedule"] == "school-hours"
    assert stored["schedules"]["school-hours"]["timezone"] == "Europe/London"
    drawn = stored["zones"][1]["polygon"]  # where the clicks landed, normalised
    assert len(drawn) == len(WALKWAY)
    for (x, y), (wx, wy) in zip(drawn, WALKWAY, strict=True):
        assert abs(x - wx) < 0.01 and abs(y - wy) < 0.01, (drawn, WALKWAY)
    wait_for(
        lambda: ("walkway", "inner") in env.zone_events(accepted),
        60,
        "zone events in the new inner ring",
    )
    assert ("walkway", "inner") not in env.zone_events(start, saved)


@pytest.mark.data
def test_a_push_while_the_edge_is_offline_is_pending_then_applied(page: Page, env: Env) -> None:
    wait_for(lambda: env.online() is True, 60, "the edge online")
    open_editor(page, env)
    env.stop_edge()
    wait_for(lambda: env.online() is False, 30, "the edge offline")

    draw(page, "line", [(0.1, 0.6), (0.9, 0.6)])
    page.fill(".line-row .line-id", "gate-line")
    page.click("#save")
    status = page.locator("#zone-status")
    expect(status).to_have_attribute("data-state", "pending")
    expect(status).to_contain_text("The device is offline")
    shot(page, "zone_editor_pending_offline")
    assert "gate-line" not in json.dumps(env.stored_zones()), "applied while offline?"

    env.start_edge()
    expect(status).to_contain_text("accepted", timeout=90_000)
    shot(page, "zone_editor_applied_on_return")
    assert [ln["id"] for ln in env.stored_zones()["lines"]] == ["gate-line"]


@pytest.mark.data
def test_a_config_the_edge_refuses_shows_rejected_with_its_reason(page: Page, env: Env) -> None:
    wait_for(lambda: env.online() is True, 60, "the edge online")
    open_editor(page, env, "yard")
    expect(page.locator("#snap-msg")).to_contain_text("unknown camera")
    draw(page, "mask", [(0.7, 0.005), (0.995, 0.005), (0.995, 0.3)])
    page.click("#save")
    status = page.locator("#zone-status")
    expect(status).to_have_attribute("data-state", "rejected", timeout=30_000)
    expect(status).to_contain_text("unknown camera 'yard'")
    expect(status).to_contain_text("It keeps the zones of its local file")
    shot(page, "zone_editor_rejected")
    assert [z["id"] for z in env.stored_zones()["zones"]] == ["road", "walkway"]  # gate kept
