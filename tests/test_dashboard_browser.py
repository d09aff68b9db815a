"""The dashboard in a real browser (Playwright driving Debian's /usr/bin/chromium, headless)
against one real hub per module (uvicorn in a thread, SQLite). Incidents are injected
through the hub's own ingest (contract messages -> Ingestor -> incidents), not by running
the video models; enrolment runs the real face pipeline. Each test saves a screenshot to
artifacts/screenshots/."""

from __future__ import annotations

import base64
import datetime as dt
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Health, SensorReading, encode
from ringwatch.contract.topics import EventKind, event_topic, health_topic, sensor_topic
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.settings import HubSettings
from tests.services import free_port

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SECRET = "browser-test-secret"
ADMIN = ("admin", "admin-password")
SITE, DEVICE = "campus-n", "box-1"
CONFIG: dict[str, Any] = {
    "stations": [{"id": "st-north", "name": "North Station"}],
    "managers": [{"id": "pm-acme", "name": "Acme Property"}],
    "sites": [
        {
            "id": SITE,
            "name": "North School",
            "station": "st-north",
            "manager": "pm-acme",
            "devices": [
                {
                    "id": DEVICE,
                    "cameras": [
                        {"id": "gate", "default_ring": "perimeter"},
                        {"id": "shed-cam", "role": "shed", "shed": "shed-a"},
                    ],
                }
            ],
        }
    ],
}


@dataclass
class Dash:
    url: str
    hub: Hub
    ingestor: Ingestor
    browser: Browser
    data: Path

    def send(self, *messages: Event | Health | SensorReading) -> None:
        batch = [Inbound(_topic(m), encode(m)) for m in messages]
        result = self.ingestor.ingest(batch)
        assert not result.dead, result.dead

    def api_token(self) -> dict[str, str]:
        res = httpx.post(
            f"{self.url}/api/v1/login/access-token",
            data={"username": ADMIN[0], "password": ADMIN[1]},
        )
        assert res.status_code == 200, res.text
        return {"Authorization": f"Bearer {res.json()['access_token']}"}

    def incidents(self, kind: str) -> list[Incident]:
        with self.hub.sessions() as session:
            return list(session.scalars(sa.select(Incident).where(Incident.kind == kind)))


def _topic(m: Event | Health | SensorReading) -> str:
    if isinstance(m, Event):
        return event_topic(m.site, m.device, m.kind)
    if isinstance(m, Health):
        return health_topic(m.site, m.device)
    return sensor_topic(m.site, m.shed, m.bay)


def event(kind: EventKind, camera: str, **fields: Any) -> Event:
    return Event.model_validate(
        {
            "event_id": new_event_id(),
            "captured_at": dt.datetime.now(dt.UTC),
            "site": SITE,
            "device": DEVICE,
            "camera": camera,
            "kind": kind,
            "phase": "start",
            "frame_width": 640,
            "frame_height": 360,
            **fields,
        }
    )


def _serve(app: Any, port: int) -> tuple[Any, threading.Thread]:
    import uvicorn

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", timeout_graceful_shutdown=2
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="hub-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    return server, thread


def _admin(hub: Hub) -> None:
    from ringwatch.hub import crud
    from ringwatch.hub.schemas import UserCreate

    with hub.sessions.begin() as session:
        data = UserCreate.model_validate(
            {"username": ADMIN[0], "password": ADMIN[1], "role": "admin"}
        )
        crud.create_user(session, data, dt.datetime.now(dt.UTC))


@pytest.fixture(scope="module")
def dash(
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, data_dir: Path
) -> Iterator[Dash]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("dashboard")
    settings = HubSettings(
        database_url=f"sqlite:///{tmp / 'hub.sqlite3'}", jwt_secret=SECRET, template_key=SECRET
    )
    app = create_app(
        settings, HubConfig.model_validate(CONFIG), models_dir=models_dir, ingest=False
    )
    hub: Hub = app.state.hub
    port = free_port()
    server, thread = _serve(app, port)
    try:
        assert hub.incidents is not None
        _admin(hub)
        ingestor = Ingestor(
            hub.sessions, hub.matcher, hub.clock, IngestStats(), hub.incidents.on_stored
        )
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield Dash(f"http://127.0.0.1:{port}", hub, ingestor, browser, data_dir)
            finally:
                browser.close()
    finally:
        server.should_exit = True
        thread.join(timeout=15)


@pytest.fixture
def page(dash: Dash) -> Iterator[Page]:
    context = dash.browser.new_context(viewport={"width": 1400, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def log_in(page: Page, dash: Dash) -> None:
    page.goto(f"{dash.url}/")
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", ADMIN[1])
    page.click("#login button[type=submit]")
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "on")


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_log_in_with_a_wrong_then_the_right_password(page: Page, dash: Dash) -> None:
    page.goto(f"{dash.url}/")
    expect(page.locator("#login")).to_be_visible()
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", "not-the-password")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_contain_text("incorrect user name or password")
    shot(page, "01-login")
    log_in(page, dash)
    expect(page.locator("#whoami")).to_have_text("admin (admin)")
    shot(page, "02-board-empty")


def test_a_new_shed_alarm_appears_live_and_acknowledging_stops_its_timer(
    page: Page, dash: Dash
) -> None:
    log_in(page, dash)
    page.evaluate("window.__sameDocument = true")
    dash.send(event(EventKind.SHED, "shed-cam", level="alarm", scores={"fire": 0.81}))
    row = page.locator("tr.incident[data-kind=shed]")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_have_attribute("data-colour", "red")
    expect(page.locator("#alarm")).to_be_visible()
    expect(page.locator("#alarm")).to_contain_text("NEW RED INCIDENT")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    timer = row.locator(".timer[data-stage=acknowledged]")
    expect(timer).to_have_attribute("data-state", "running")
    first = timer.inner_text()
    expect(timer).not_to_have_text(first, timeout=3000)  # it counts down
    assert "left" in timer.inner_text()
    shot(page, "03-board-new-red-incident")

    row.locator("button.ack").click()
    expect(timer).to_have_attribute("data-state", "done")
    stopped = timer.inner_text()
    assert stopped.startswith("✓"), stopped
    time.sleep(1.5)
    assert timer.inner_text() == stopped, "the timer kept running after acknowledgement"
    # The next stage's timer still runs.
    expect(row.locator(".timer[data-stage=onsite_check]")).to_have_attribute(
        "data-state", "running"
    )
    [incident] = dash.incidents("shed")
    shot(page, "04-board-acknowledged")
    assert incident.level == "alarm"


def inject_match(dash: Dash) -> None:
    """Enrol lin-manuel-miranda.png through the API (the real face pipeline), then send a
    face event of him from the gate camera's perimeter ring through the hub's ingest."""
    headers = dash.api_token()
    body = {
        "display_name": "Lin-Manuel Miranda",
        "tier": "red",
        "reason": "Demo watch-list entry (browser test)",
        "case_reference": "CASE-BROWSER-1",
        "legal_basis": "court order (test)",
        "station_id": "st-north",
        "review_due": (dt.date.today() + dt.timedelta(days=90)).isoformat(),
    }
    res = httpx.post(f"{dash.url}/api/v1/persons", json=body, headers=headers)
    assert res.status_code == 201, res.text
    person_id = res.json()["id"]
    photo = (dash.data / "faces/watchlist_demo/lin-manuel-miranda.png").read_bytes()
    res = httpx.post(
        f"{dash.url}/api/v1/persons/{person_id}/photos",
        files={"photo": ("lin.png", photo, "image/png")},
        headers=headers,
        timeout=60,
    )
    assert res.status_code == 201, res.text
    face = dash.hub.enroller().enrol(photo, "lin.png")
    dash.send(
        event(
            EventKind.FACE,
            "gate",
            phase="update",
            ring="perimeter",
            track_id=7,
            embedding=[float(v) for v in face.embedding],
            face_quality=0.9,
            face_crop_jpeg=base64.b64encode(face.crop_jpeg).decode(),
        )
    )


def test_reject_a_watch_list_match_with_a_reason(page: Page, dash: Dash) -> None:
    log_in(page, dash)
    inject_match(dash)
    row = page.locator("tr.incident[data-kind=watchlist]")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_contain_text("Lin-Manuel Miranda [red]")
    expect(row).to_contain_text("UNCONFIRMED")
    expect(row).to_have_attribute("data-colour", "red")  # perimeter orange, red tier +1
    row.locator("a").first.click()

    expect(page.locator("#case-ref")).to_have_text("CASE-BROWSER-1")
    expect(page.locator("#similarity")).to_contain_text("threshold")
    for image in ("#live-crop", "#enrolled-photo"):
        page.wait_for_function(f"document.querySelector('{image}').naturalWidth > 0")
    expect(page.locator("#ring-diagram circle.point")).to_have_count(1)
    expect(page.locator("#timeline tbody tr")).to_have_count(1)
    expect(page.locator("#routing")).to_contain_text("station st-north")
    shot(page, "05-incident-match-evidence")

    page.click("#reject")  # no reason: refused
    expect(page.locator("#decision-error")).to_contain_text("reason")
    page.fill("#reject-reason", "Different person: the live face has a beard")
    page.click("#reject")
    expect(page.locator("#decision")).to_contain_text("Rejected by admin")
    expect(page.locator("#decision")).to_contain_text("the live face has a beard")
    expect(page.locator("#audit")).to_contain_text("reject")
    expect(page.locator("li[data-stage=acknowledged] .timer")).to_have_attribute(
        "data-state", "done"
    )
    shot(page, "06-incident-rejected")
    [incident] = dash.incidents("watchlist")
    assert (incident.status, incident.decision_reason) == (
        "rejected",
        "Different person: the live face has a beard",
    )


def test_enrol_a_person_with_a_photo_and_see_a_bad_photo_refused(page: Page, dash: Dash) -> None:
    log_in(page, dash)
    page.click("nav a[href='#/registry']")
    page.click("#enrol-link")
    page.fill("#enrol input[name=display_name]", "Alex Lacamoire")
    page.select_option("#enrol select[name=tier]", "yellow")
    page.fill("#enrol textarea[name=reason]", "Demo entry enrolled from the browser")
    page.fill("#enrol input[name=case_reference]", "CASE-ENROL-2")
    page.fill("#enrol input[name=legal_basis]", "court order (test)")
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    page.fill("#enrol input[name=review_due]", soon)
    folder = dash.data / "faces/watchlist_demo"
    page.set_input_files("#enrol input[name=photo]", str(folder / "alex-lacamoire.png"))
    page.click("#enrol button[type=submit]")
    expect(page.locator("#photos h2")).to_have_text("Enrolled photos (1)", timeout=60_000)
    page.wait_for_function("document.querySelector('#photos img.face').naturalWidth > 0")
    expect(page.locator("#review-warning")).to_have_text(f"Review due {soon}.")

    page.set_input_files("#photo-file", str(folder / "two_people.jpg"))
    page.click("#photo-upload button[type=submit]")
    result = page.locator("#photo-result")
    expect(result).to_contain_text("Photo refused", timeout=60_000)
    expect(result).to_contain_text("several_faces")
    expect(page.locator("#photos h2")).to_have_text("Enrolled photos (1)")
    shot(page, "07-enrol-bad-photo-refused")

    page.click("nav a[href='#/registry']")
    expect(page.locator("#persons")).to_contain_text("Alex Lacamoire")
    expect(page.locator("#review-warning")).to_contain_text("1 due within 30 days")
    expect(page.locator("#persons tr", has_text="Alex Lacamoire")).to_contain_text(
        "review due soon"
    )
    page.fill("#search", "CASE-ENROL")
    expect(page.locator("#persons tr")).to_have_count(1)
    shot(page, "08-watch-list")


def test_devices_and_sheds_show_health_and_bay_charts(page: Page, dash: Dash) -> None:
    now = dt.datetime.now(dt.UTC)
    dash.send(
        Health.model_validate(
            {
                "site": SITE,
                "device": DEVICE,
                "at": now,
                "agent_version": "0.1.0",
                "uptime_s": 42,
                "cameras": [
                    {
                        "camera": "gate",
                        "online": True,
                        "fps": 4.8,
                        "latency_ms": 120,
                        "dropped_frames": 0,
                        "reconnects": 0,
                    },
                    {
                        "camera": "shed-cam",
                        "online": False,
                        "fps": 0,
                        "latency_ms": 0,
                        "dropped_frames": 3,
                        "reconnects": 2,
                    },
                ],
                "outbox_depth": 5,
                "outbox_dropped": 0,
            }
        )
    )
    dash.send(
        *[
            SensorReading(
                site=SITE,
                shed="shed-a",
                bay="b2",
                current_a=3.0,
                voltage_v=48.0,
                temperature_c=30.0 + 5 * n,
                measured_at=now - dt.timedelta(seconds=10 - n),
            )
            for n in range(10)
        ]
    )
    log_in(page, dash)
    page.click("nav a[href='#/devices']")
    device = page.locator("tr.device[data-id=box-1]")
    expect(device).to_contain_text("online")
    expect(device).to_contain_text("0.1.0")
    expect(page.locator("tr.camera[data-id=gate]")).to_contain_text("4.8 fps")
    expect(page.locator("tr.camera[data-id=shed-cam]")).to_contain_text("offline")
    shot(page, "09-devices")

    page.click("nav a[href='#/sheds']")
    bay = page.locator(".shed[data-shed=shed-a] .bay[data-bay=b2]")
    expect(bay).to_contain_text("75.0 °C")
    expect(bay).to_have_class("bay hot")
    expect(bay.locator("svg.chart polyline")).to_have_count(1)
    shot(page, "10-sheds")


def test_the_dashboard_stream_needs_the_cookie_and_is_scoped_by_role(dash: Dash) -> None:
    """A property manager's stream carries the shed alerts of their sites and no watch-list
    alert (its evidence names a person), even where the shed stands on a campus."""
    if not dash.incidents("watchlist"):
        inject_match(dash)
    dash.send(event(EventKind.SHED, "shed-cam", level="warning", scores={"fire": 0.4}))
    admin = dash.api_token()
    body = {
        "username": "acme",
        "password": "acme-password",
        "role": "property_manager",
        "managers": ["pm-acme"],
    }
    res = httpx.post(f"{dash.url}/api/v1/users", json=body, headers=admin)
    assert res.status_code == 201, res.text
    assert httpx.get(f"{dash.url}/api/v1/dashboard/stream").status_code == 401
    kinds = {kind: stream_kinds(dash, name, password) for kind, name, password in (
        ("admin", *ADMIN),
        ("manager", "acme", "acme-password"),
    )}  # fmt: skip
    assert {"watchlist", "shed"} <= kinds["admin"]
    assert kinds["manager"] == {"shed"}


def stream_kinds(dash: Dash, username: str, password: str) -> set[str]:
    """The incident kinds in a user's dashboard stream from the start (Last-Event-ID 0)."""
    import json

    with httpx.Client(base_url=dash.url, timeout=httpx.Timeout(10, read=3)) as client:
        res = client.post(
            "/api/v1/login/access-token", data={"username": username, "password": password}
        )
        headers = {"Authorization": f"Bearer {res.json()['access_token']}"}
        assert client.post("/api/v1/dashboard/session", headers=headers).status_code == 204
        kinds: set[str] = set()
        try:
            with client.stream(
                "GET", "/api/v1/dashboard/stream", headers={"Last-Event-ID": "0"}
            ) as stream:
                assert stream.status_code == 200
                for line in stream.iter_lines():
                    if line.startswith("data:"):
                        kinds.add(json.loads(line[5:])["kind"])
        except httpx.ReadTimeout:
            pass  # the stream stays open: everything up to now has arrived
        return kinds
