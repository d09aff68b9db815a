"""The dashboard in a real browser (Playwright driving Debian's /usr/bin/chromium, headless)
against one real hub per module (uvicorn in a thread, SQLite). Incidents are injected
through the hub's own ingest (contract messages -> Ingestor -> incidents), not by running
the video models; enrolment runs the real face pipeline. Each test saves a screenshot to
artifacts/screenshots/."""

from __future__ import annotations

import base64
import datetime as dt
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, Page, expect, sync_playwright

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Health, SensorReading, encode
from ringwatch.contract.topics import EventKind, event_topic, health_topic, sensor_topic
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.workers import Load, WorkerBeat
from tests.hub_fixtures import add_quarantine, database
from tests.services import free_port

REPO = Path(__file__).resolve().parent.parent
SHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
SECRET = "browser-test-secret"
ADMIN = ("admin", "admin-password")
SITE, DEVICE = "campus-n", "box-1"
CONFIG: dict[str, Any] = {
    "incidents": {"reraise_shed_after_s": 2},
    "stations": [{"id": "st-north", "name": "North Station"}],
    "managers": [{"id": "pm-acme", "name": "Acme Property"}],
    "sites": [
        {
            "id": SITE,
            "name": "North School",
            "time_zone": "Asia/Shanghai",
            "station": "st-north",
            "manager": "pm-acme",
            "devices": [
                {
                    "id": DEVICE,
                    "cameras": [
                        {"id": "gate", "default_ring": "perimeter"},
                        {"id": "door", "default_ring": "inner"},
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
    tmp_path_factory: pytest.TempPathFactory, models_dir: Path, data_dir: Path, pg_url: str
) -> Iterator[Dash]:
    """One hub on a fresh PostgreSQL schema (SQLite's single writer turns a browser test's
    many parallel requests into "database is locked" retries) and one browser."""
    if not Path(CHROMIUM).exists():
        pytest.fail(f"the browser tests need Debian's chromium at {CHROMIUM} (apt-get install)")
    SHOTS.mkdir(parents=True, exist_ok=True)
    tmp = tmp_path_factory.mktemp("dashboard")
    with database("postgresql", tmp, pg_url) as url:
        settings = HubSettings(database_url=url, jwt_secret=SECRET, template_key=SECRET)
        app = create_app(
            settings, HubConfig.model_validate(CONFIG), models_dir=models_dir, ingest=False
        )
        yield from _run(app, data_dir)


def _run(app: Any, data_dir: Path) -> Iterator[Dash]:
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


LANGS = ("zh-CN", "en")
SIZES = {"desktop": (1440, 900), "tablet": (768, 1024), "phone": (390, 844)}
# Latin words a zh-CN page may show: names and ids from the data, units, protocol names.
LATIN_OK = {
    "Ringwatch",
    "English",
    "MQTT",
    "Webhook",
    "CSV",
    "JSON",
    "YAML",
    "SSE",
    "UTC",
    "fps",
    "ms",
    "timezone",
    "open",
    "days",
    "start",
    "end",
    "holidays",
    "Asia",
    "Shanghai",
    "North",
    "School",
    "Station",
    "Acme",
    "Property",
    "Lin",
    "Manuel",
    "Miranda",
    "Alex",
    "Lacamoire",
    "Nobody",
    "Photo",
    "Tapped",
    "CASE",
    "BROWSER",
    "ENROL",
    "PHOTO",
    "admin",
    "acme",
    "campus",
    "box",
    "gate",
    "door",
    "shed",
    "cam",
    "north",
    "hub",
    "incidents",
    "timers",
    "shed-watch",
    "system",
    "several_faces",
    "no_face",
    "st-north",
    "pm-acme",
    "jpeg",
}


def log_in(page: Page, dash: Dash, user: tuple[str, str] = ADMIN) -> None:
    page.goto(f"{dash.url}/")
    page.fill("input[name=username]", user[0])
    page.fill("input[name=password]", user[1])
    page.click("#login button[type=submit]")
    expect(page.locator("#board")).to_be_visible()
    expect(page.locator("#live")).to_have_attribute("data-state", "on")
    # The language is saved per user: switch to the one this browser context asks for.
    wanted = page.evaluate("localStorage.getItem('ringwatch.language')")
    if wanted and page.evaluate("document.documentElement.lang") != wanted:
        # The catalogue switches (html lang) before the preference is saved and the page
        # drawn again: wait for the board drawn anew, not only for the attribute.
        page.evaluate("document.getElementById('board').dataset.stale = '1'")
        page.select_option("#lang", wanted)
        expect(page.locator("html")).to_have_attribute("lang", wanted)
        expect(page.locator("#board:not([data-stale])")).to_be_attached()


def open_page(dash: Dash, lang: str = "zh-CN", size: str = "desktop") -> tuple[Any, Page]:
    width, height = SIZES[size]
    context = dash.browser.new_context(viewport={"width": width, "height": height})
    context.add_init_script(f"localStorage.setItem('ringwatch.language', '{lang}')")
    return context, context.new_page()


@pytest.fixture
def page(dash: Dash) -> Iterator[Page]:
    context, page = open_page(dash)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield page
        no_missing_keys(page)
    finally:
        context.close()
    assert not errors, f"JavaScript errors in the page: {errors}"


def shot(page: Page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def no_missing_keys(page: Page) -> None:
    missing = page.evaluate("[...window.__i18nMissing || []]")
    assert not missing, (
        f"catalogue keys missing in {page.evaluate('document.documentElement.lang')}: {missing}"
    )


UNTRANSLATED_JS = """(allowed) => {
  const words = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest('.raw, script, style, [hidden], #lang, #login-lang, textarea')) continue;
    if (!el.getClientRects().length) continue;
    for (const w of n.textContent.match(/[A-Za-z][A-Za-z_]{2,}/g) || []) {
      if (!allowed.includes(w)) words.add(w);
    }
  }
  return [...words];
}"""


# Chinese the tests themselves type in (reasons, legal bases): data, shown as entered.
CHINESE_DATA = (
    "演示布控人员（浏览器测试）",
    "法院裁定（测试）",
    "不是此人：抓拍图中的人留有胡须",
    "误报：充电器指示灯反光",
    "设备已修复",  # a quarantine lifted with this reason (the devices test)
    "演示：从浏览器布控",
    "经值班所长批准，案件 CASE-BROWSER-1 现场比中确认",  # a live shot's basis (LIVE_SHOT_BASIS)
)
LIVE_SHOT_BASIS = CHINESE_DATA[-1]
CHINESE_JS = """(data) => {
  const found = new Set();
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const el = n.parentElement;
    if (!el || el.closest('script, style, [hidden], #lang, #login-lang, textarea')) continue;
    if (!el.getClientRects().length) continue;
    let text = n.textContent;
    for (const d of data) text = text.split(d).join('');
    if (/[\u3400-\u9fff\u3000-\u303f\uff00-\uffef]/.test(text)) found.add(text.trim());
  }
  return [...found];
}"""


def chinese_on_page(page: Page) -> list[str]:
    """Texts with Chinese on an English page, beyond the data the tests typed in."""
    found: list[str] = page.evaluate(CHINESE_JS, list(CHINESE_DATA))
    return found


def untranslated(page: Page, extra: frozenset[str] = frozenset()) -> list[str]:
    """English words shown on a zh-CN page, beyond names, ids and units."""
    found: list[str] = page.evaluate(UNTRANSLATED_JS, sorted(LATIN_OK | extra))
    return found


def no_sideways_scroll(page: Page, where: str) -> None:
    width = page.evaluate("document.documentElement.scrollWidth")
    view = page.evaluate("window.innerWidth")
    assert width <= view, f"{where}: the page scrolls sideways ({width} px content, {view} px wide)"


def fully_visible(page: Page, selector: str) -> None:
    """The element lies inside the viewport's width (no sideways scrolling needed). The
    board re-renders on every alert, so the box is read again if the element was replaced."""
    view = page.evaluate("window.innerWidth")
    box = None
    for _ in range(20):
        expect(page.locator(selector).first).to_be_visible(timeout=15_000)
        box = page.locator(selector).first.bounding_box()
        if box is not None:
            break
        page.wait_for_timeout(100)
    assert box is not None, f"{selector} is not shown"
    assert box["x"] >= 0 and box["x"] + box["width"] <= view, f"{selector} is off screen: {box}"


def test_login_in_chinese_header_hidden_until_logged_in(page: Page, dash: Dash) -> None:
    page.goto(f"{dash.url}/")
    expect(page.locator("#login")).to_be_visible()
    expect(page.locator("#login h1")).to_contain_text("登录")
    for hidden in ("header#top", "#logout", "#live"):
        expect(page.locator(hidden)).to_be_hidden()
    page.fill("input[name=username]", ADMIN[0])
    page.fill("input[name=password]", "not-the-password")
    page.click("#login button[type=submit]")
    expect(page.locator("#login-error")).to_have_text("用户名或密码错误。")
    shot(page, "01-login-zh")
    log_in(page, dash)
    expect(page.locator("#whoami")).to_have_text("admin（管理员）")
    expect(page.locator("#live")).to_have_text("实时")
    shot(page, "02-board-empty-zh")
    page.select_option("#lang", "en")
    expect(page.locator("#live")).to_have_text("live")
    expect(page.locator("nav a[href='#/board']")).to_have_text("Incidents")
    expect(page.locator("#board thead")).to_contain_text("Response timers")
    page.select_option("#lang", "zh-CN")  # saved per user: the next tests start in zh-CN
    expect(page.locator("#board thead")).to_contain_text("处置计时")


def test_a_new_shed_alarm_live_acknowledge_then_undo(page: Page, dash: Dash) -> None:
    log_in(page, dash)
    page.evaluate("window.__sameDocument = true")
    dash.send(event(EventKind.SHED, "shed-cam", level="alarm", scores={"fire": 0.81}))
    row = page.locator("tr.incident[data-kind=shed]")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_have_attribute("data-colour", "red")
    expect(page.locator("#alarm")).to_contain_text("新的红色预警")
    expect(row).to_contain_text("停车棚 shed-a：明火/传感器告警")
    assert page.evaluate("window.__sameDocument") is True, "the page was reloaded"
    timer = row.locator(".timer[data-stage=acknowledged]")
    expect(timer).to_have_attribute("data-state", "running")
    first = timer.inner_text()
    expect(timer).not_to_have_text(first, timeout=3000)  # it counts down
    assert "剩余" in timer.inner_text()
    when = row.locator(".when").first.inner_text()
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d", when), when  # 24-hour ISO
    shot(page, "03-board-new-red-incident-zh")

    row.locator("button.ack").click()
    expect(timer).to_have_attribute("data-state", "done")
    stopped = timer.inner_text()
    assert stopped.startswith("✓ 物业签收"), stopped
    time.sleep(1.2)
    assert timer.inner_text() == stopped, "the timer kept running after acknowledgement"
    expect(row.locator(".timer[data-stage=onsite_check]")).to_have_attribute(
        "data-state", "running"
    )
    shot(page, "04-board-acknowledged-zh")
    row.locator("button.undo").click()  # within 10 s: taken back
    expect(timer).to_have_attribute("data-state", "running")
    expect(row.locator("button.ack")).to_be_visible()
    [incident] = dash.incidents("shed")
    assert incident.level == "alarm"
    page.goto(f"{dash.url}/#/incident/{incident.id}")
    # a step marked on the incident page can be taken back within 10 s
    step = page.locator("#steps li[data-stage=acknowledged]")
    step.locator("button.step").click()
    expect(step.locator(".timer")).to_have_attribute("data-state", "done")
    step.locator("button.undo").click()
    expect(step.locator("button.step")).to_be_visible()
    expect(step.locator(".timer")).to_have_attribute("data-state", "running")


def test_closing_with_steps_left_asks_for_a_reason_and_a_burning_shed_raises_again(
    page: Page, dash: Dash
) -> None:
    log_in(page, dash)
    [incident] = [i for i in dash.incidents("shed") if i.status == "open"]
    headers = dash.api_token()
    res = httpx.post(f"{dash.url}/api/v1/incidents/{incident.id}/close", json={}, headers=headers)
    assert res.status_code == 409 and "needs a reason" in res.json()["detail"], res.text
    page.goto(f"{dash.url}/#/incident/{incident.id}")
    page.click("#close")
    panel = page.locator("#close-confirm")
    expect(panel).to_be_visible()
    expect(panel).to_contain_text("现场核查")
    page.click("#close-confirmed")  # no reason: the hub refuses, in words
    expect(page.locator("#steps-error")).to_contain_text("请填写原因")
    shot(page, "11-incident-close-needs-reason-zh")
    page.fill("#close-reason", "误报：充电器指示灯反光")
    page.click("#close-confirmed")
    expect(page.locator(".incident-head")).to_contain_text("已结束")
    expect(page.locator("#audit")).to_contain_text("误报：充电器指示灯反光")
    # The edge never sent an "end": the fire still burns, so the hub raises it again.
    page.click("nav a[href='#/board']")
    again = page.locator("tr.incident[data-kind=shed][data-status=open]")
    expect(again).to_have_count(1, timeout=15_000)
    expect(page.locator("#alarm")).to_contain_text("新的红色预警")
    shot(page, "12-board-shed-raised-again-zh")


def inject_match(
    dash: Dash,
    enrol: bool = True,
    camera: str = "gate",
    who: tuple[str, str, str] = ("lin-manuel-miranda.png", "Lin-Manuel Miranda", "red"),
) -> None:
    """Enrol lin-manuel-miranda.png (or ``who``: photo, name, tier) through the API (the
    real face pipeline), then send a face event of him from the gate camera's perimeter
    ring through the hub's ingest."""
    photo = (dash.data / "faces/watchlist_demo" / who[0]).read_bytes()
    if enrol:
        headers = dash.api_token()
        body = {
            "display_name": who[1],
            "tier": who[2],
            "reason": "演示布控人员（浏览器测试）",
            "case_reference": "CASE-BROWSER-1",
            "legal_basis": "法院裁定（测试）",
            "station_id": "st-north",
            "review_due": (dt.date.today() + dt.timedelta(days=90)).isoformat(),
        }
        res = httpx.post(f"{dash.url}/api/v1/persons", json=body, headers=headers)
        assert res.status_code == 201, res.text
        person_id = res.json()["id"]
        res = httpx.post(
            f"{dash.url}/api/v1/persons/{person_id}/photos",
            files={"photo": ("lin.png", photo, "image/png")},
            headers=headers,
            timeout=60,
        )
        assert res.status_code == 201, res.text
    face = dash.hub.enroller().enrol(photo, "lin.png")
    dash.send(
        *[
            event(
                EventKind.FACE,
                camera,
                phase="update",
                ring="perimeter" if camera == "gate" else "inner",
                track_id=7,
                embedding=[float(v) for v in face.embedding],
                face_quality=0.9,
                face_crop_jpeg=base64.b64encode(face.crop_jpeg).decode(),
            )
            for _ in range(3)
        ]
    )


def test_reject_a_match_then_the_same_person_on_that_camera_is_kept_quiet(
    page: Page, dash: Dash
) -> None:
    log_in(page, dash)
    inject_match(dash)
    row = page.locator("tr.incident[data-kind=watchlist]")
    expect(row).to_have_count(1, timeout=15_000)
    expect(row).to_contain_text("Lin-Manuel Miranda【红色】")
    expect(row).to_contain_text("待核实比中")
    expect(row).to_contain_text("重点人员比中：Lin-Manuel Miranda")
    row.locator("a.title").click()

    expect(page.locator("#case-ref")).to_have_text("CASE-BROWSER-1")
    expect(page.locator("#similarity")).to_contain_text("阈值")
    for image in ("#live-crop", "#enrolled-photo"):
        page.wait_for_function(f"() => document.querySelector('{image}').naturalWidth > 0")
    head = page.locator(".incident-head").inner_text()
    assert head.count("待核实比中") == 1, head
    expect(page.locator("#timeline tbody tr")).to_have_count(1)  # 3 sightings, one segment
    expect(page.locator("#timeline tbody tr")).to_contain_text("×3")
    expect(page.locator("#routing")).to_contain_text("派出所 st-north")
    # This hub has no broker: the station's MQTT alert waits, and the table says why in
    # Chinese; the hub's raw English error is folded under 技术信息 for the technician.
    expect(page.locator("#routing td.delivery").first).to_contain_text("待发送：消息服务器未接收")
    detail = page.locator("#routing details.error-detail").first
    expect(detail.locator("code")).to_be_hidden()
    detail.locator("summary").click()
    expect(detail.locator("code")).to_have_text("broker did not take it")
    # The audit trail's detail in words, not the hub's JSON ({"kind": "watchlist"}).
    expect(page.locator("#audit td.detail").first).to_have_text("类型：重点人员比中")
    expect(page.locator("#audit")).not_to_contain_text('{"kind"')
    shot(page, "05-incident-match-evidence-zh")

    page.click("#reject")  # no reason: refused in a sentence, not pydantic's text
    expect(page.locator("#decision-error")).to_have_text("原因：请填写（至少1个字符）。")
    page.fill("#reject-reason", "不是此人：抓拍图中的人留有胡须")
    # The officer goes back to mend a word: the cursor sits after "不是此人：".
    page.evaluate("document.querySelector('#reject-reason').setSelectionRange(5, 5)")
    inject_match(dash, enrol=False)  # seen again while the officer types: the page redraws
    expect(page.locator("#timeline tbody tr")).to_contain_text("×6", timeout=15_000)
    expect(page.locator("#reject-reason")).to_have_value("不是此人：抓拍图中的人留有胡须")
    expect(page.locator("#reject-reason")).to_be_focused()  # on a phone: the keyboard stays up
    caret = page.evaluate(
        "[document.activeElement.selectionStart, document.activeElement.selectionEnd]"
    )
    assert caret == [5, 5], f"the cursor moved from where the officer left it: {caret}"
    page.click("#reject")
    expect(page.locator("#decision")).to_contain_text("admin 于")
    expect(page.locator("#decision")).to_contain_text("不是此人")
    expect(page.locator("#suppression")).to_contain_text("gate")
    head = page.locator(".incident-head").inner_text()
    assert head.count("已排除") == 1, head  # not "rejected rejected"
    shot(page, "06-incident-rejected-zh")

    inject_match(dash, enrol=False)  # seen again at the gate right after the rejection
    time.sleep(1.0)
    assert len(dash.incidents("watchlist")) == 1, "a new alert fired after the rejection"
    page.reload()
    expect(page.locator("#suppression")).to_contain_text("已静默 3 次")
    page.click("nav a[href='#/board']")
    expect(page.locator("tr.incident[data-kind=watchlist]")).to_have_count(0)  # active only
    page.select_option("select[name=state]", "all")
    done = page.locator("tr.incident[data-kind=watchlist]")
    expect(done).to_have_class(re.compile(r"\binactive\b"))
    expect(done.locator(".badge.escalating")).to_have_count(0)
    page.click("nav a[href='#/false-matches']")
    gate = page.locator("#false-matches tr[data-camera=gate]")
    expect(gate).to_contain_text("100.0%")
    expect(gate.locator(".suppressed")).to_have_text("3")
    shot(page, "13-false-match-report-zh")

    # Seen on another camera: not kept quiet; confirmed right from the board's row.
    inject_match(dash, enrol=False, camera="door")
    page.click("nav a[href='#/board']")
    fresh = page.locator("tr.incident[data-kind=watchlist][data-status=open]")
    expect(fresh).to_have_count(1, timeout=15_000)
    fresh.locator("button.confirm").click()
    confirmed = page.locator("tr.incident[data-kind=watchlist][data-status=confirmed]")
    expect(confirmed).to_contain_text("已确认")
    shot(page, "15-board-match-confirmed-from-the-row-zh")

    # Confirmed: the live shot can become one more photo of him, with the basis recorded.
    confirmed.locator("a.title").click()
    expect(page.locator("#live-shot-form")).to_be_visible()
    page.click("#live-shot")  # no basis given: refused in a sentence
    expect(page.locator("#live-shot-result")).to_contain_text("至少10个字符")
    page.fill("#live-shot-consent", LIVE_SHOT_BASIS)
    page.click("#live-shot")
    expect(page.locator("#live-shot-result")).to_have_text("已加入此人的底库照片。")
    expect(page.locator("#live-shot")).to_be_disabled()
    shot(page, "16-incident-live-shot-added-zh")
    person = next(i.person_id for i in dash.incidents("watchlist") if i.status == "confirmed")
    photos = httpx.get(f"{dash.url}/api/v1/persons/{person}/photos", headers=dash.api_token())
    assert photos.status_code == 200 and len(photos.json()) == 2, photos.text


def test_enrol_with_a_refused_photo_only_is_not_matched(page: Page, dash: Dash) -> None:
    log_in(page, dash)
    page.click("nav a[href='#/registry']")
    page.click("#enrol-link")
    page.fill("#enrol input[name=display_name]", "Nobody Photo")
    page.select_option("#enrol select[name=tier]", "yellow")
    page.fill("#enrol textarea[name=reason]", "演示：从浏览器布控")
    page.fill("#enrol input[name=case_reference]", "CASE-ENROL-2")
    page.fill("#enrol input[name=legal_basis]", "法院裁定（测试）")
    soon = (dt.date.today() + dt.timedelta(days=10)).isoformat()
    page.fill("#enrol input[name=review_due]", soon)
    folder = dash.data / "faces/watchlist_demo"
    page.set_input_files("#enrol input[name=photo]", str(folder / "two_people.jpg"))
    page.click("#enrol button[type=submit]")
    result = page.locator("#photo-result")
    expect(result).to_contain_text("照片被拒：检测到多张大小相近的人脸", timeout=60_000)
    expect(page.locator("#photos h2")).to_have_text("底库照片（0）")
    expect(page.locator("dd[data-key='person.matched']")).to_have_text("否：没有底库照片")
    assert "null" not in page.locator("#person-page").inner_text()
    expect(page.locator("#review-warning")).to_have_text(f"复核日期：{soon}。")
    shot(page, "07-enrol-bad-photo-refused-zh")
    page.click("nav a[href='#/registry']")
    row = page.locator("#persons tr", has_text="Nobody Photo")
    expect(row).to_contain_text("即将复核")
    expect(row).to_contain_text("否")
    page.fill("#search", "CASE-ENROL")
    expect(page.locator("#persons tr")).to_have_count(1)
    shot(page, "08-watch-list-zh")


def test_a_refused_group_photo_enrols_the_face_the_officer_taps(page: Page, dash: Dash) -> None:
    """two_people.jpg is refused (two faces of similar size, neither at the centre); the
    person page shows it again with both faces boxed; tapping Obama's enrols his face."""
    log_in(page, dash)
    page.goto(f"{dash.url}/#/enrol")
    page.fill("#enrol input[name=display_name]", "Tapped Nobody")
    page.fill("#enrol textarea[name=reason]", "演示：点选人脸布控")
    page.fill("#enrol input[name=case_reference]", "CASE-3")
    page.fill("#enrol input[name=legal_basis]", "法院裁定（测试）")
    group = dash.data / "faces/watchlist_demo/two_people.jpg"
    page.set_input_files("#enrol input[name=photo]", str(group))
    page.click("#enrol button[type=submit]")
    expect(page.locator("#photo-result")).to_contain_text("大小相近的人脸", timeout=60_000)
    boxes = page.locator("#photo-pick .face-box")
    expect(boxes).to_have_count(2)
    expect(page.locator("#pick-hint")).to_contain_text("请点击要布控人员的人脸")
    # drawn where the faces are: Obama's box on the photo's left third, Biden's right
    frame = page.locator("#photo-preview").bounding_box()
    first, second = boxes.nth(0).bounding_box(), boxes.nth(1).bounding_box()
    assert frame and first and second and first["width"] > 0.1 * frame["width"]
    assert second["x"] + second["width"] < frame["x"] + frame["width"] / 2 < first["x"]
    # largest first: Biden's box, then Obama's (left, x ~241-383)
    x1, _, x2, _ = (int(v) for v in (boxes.nth(1).get_attribute("data-box") or "").split(","))
    assert x1 < 310 < x2
    boxes.nth(1).click()
    expect(boxes.nth(1)).to_have_class("face-box chosen")
    expect(boxes.nth(1)).to_have_attribute("aria-pressed", "true")
    expect(boxes.nth(1)).to_have_attribute("aria-label", "左起第 1 张人脸")
    expect(boxes.nth(0)).to_have_attribute("aria-pressed", "false")
    expect(page.locator("#pick-point")).to_have_count(1)
    shot(page, "07a-enrol-tap-the-face-zh")
    with page.expect_request(lambda r: "/photos?point=" in r.url) as sent:
        page.click("#photo-upload button[type=submit]")
    x, y = (int(v) for v in sent.value.url.split("point=")[1].split(","))
    assert x1 <= x <= x2 and 31 <= y <= 227, (x, y)
    expect(page.locator("#photo-result")).to_have_text("照片已入库。", timeout=60_000)
    expect(page.locator("#photos h2")).to_have_text("底库照片（1）")
    shot(page, "07b-enrol-tapped-face-zh")


def test_devices_and_sheds_say_the_bay_its_temperature_and_threshold(
    page: Page, dash: Dash
) -> None:
    now = dt.datetime.now(dt.UTC)
    dash.send(health(now))
    dash.send(
        *[
            SensorReading(
                site=SITE,
                shed="shed-a",
                bay="b2",
                current_a=3.0,
                voltage_v=48.0,
                temperature_c=30.0 + 0.6 * n,
                measured_at=now - dt.timedelta(seconds=80 - n),
            )
            for n in range(80)
        ]
    )
    # The hub's own heartbeat row (hub-1, running) and a second worker written by the
    # hub's WorkerBeat with the time injected: 40 events in 4 s with 3 waiting, then no
    # heartbeat for a minute.
    loads = iter([Load(0, 0, None), Load(40, 3, 1.5)])
    gone = WorkerBeat(dash.hub.sessions, "hub-2", dash.hub.clock, lambda: next(loads))
    gone.beat(now - dt.timedelta(seconds=64))
    gone.beat(now - dt.timedelta(seconds=60))
    # box-1 flooded: quarantined (recorded, not banned at the broker)
    add_quarantine(
        dash.hub.sessions, now, minutes=5, bad_count=512, reasons="invalid 500, bad_topic 12"
    )
    log_in(page, dash)
    page.click("nav a[href='#/devices']")
    flooded = page.locator("#quarantines li.quarantine[data-login=box-1]")
    expect(flooded).to_contain_text("隔离中")
    expect(flooded).to_contain_text("10 秒内 512 条异常报文（格式不符 500 条、主题错误 12 条）")
    expect(flooded).to_contain_text("仅记录：消息服务器未封禁")
    flooded.locator("input.lift-reason").fill("设备已修复")
    shot(page, "09-devices-quarantine-zh")
    flooded.locator("button.lift").click()
    expect(page.locator("#quarantines-note")).to_have_text("没有被隔离的设备。")
    with dash.hub.sessions() as session:
        lifted = session.scalars(sa.select(t.DeviceQuarantine)).one()
        assert (lifted.lifted_by, lifted.lifted_at is not None) == ("admin", True)
        entry = session.scalars(
            sa.select(t.AuditEntry).where(t.AuditEntry.action == "lift_quarantine")
        ).one()
        assert entry.reason == "设备已修复"
    device = page.locator("tr.device[data-id=box-1]")
    expect(device).to_contain_text("在线")
    expect(page.locator("tr.camera[data-id=gate]")).to_contain_text("4.8 fps")
    expect(page.locator("tr.camera[data-id=shed-cam]")).to_contain_text("离线")
    expect(page.locator(".workers-view h2")).to_have_text("中心处理进程")
    expect(page.locator("#workers tr.worker[data-name=hub-1]")).to_contain_text("运行中")
    stale = page.locator("#workers tr.worker[data-name=hub-2]")
    expect(stale).to_contain_text("无心跳")
    expect(stale).to_contain_text("10.0/秒（已存 40 条）")
    expect(stale).to_contain_text("1.5 秒（3 条待处理）")
    shot(page, "09-devices-zh")
    page.click("nav a[href='#/sheds']")
    bay = page.locator(".shed[data-shed=shed-a] .bay[data-bay=b2]")
    expect(bay).to_contain_text("车位 b2 过温：77.4 °C，超过阈值 60 °C。")
    expect(bay).to_have_class("bay hot")
    expect(bay).to_contain_text("80 个读数")  # the climb, not only the last 60
    expect(bay.locator("svg.chart line.limit")).to_have_count(1)
    shot(page, "10-sheds-zh")


def health(now: dt.datetime) -> Health:
    cams = [
        {"camera": "gate", "online": True, "fps": 4.8, "latency_ms": 120},
        {"camera": "shed-cam", "online": False, "fps": 0, "latency_ms": 0},
    ]
    return Health.model_validate(
        {
            "site": SITE,
            "device": DEVICE,
            "at": now,
            "agent_version": "0.1.0",
            "uptime_s": 42,
            "cameras": [{**c, "dropped_frames": 0, "reconnects": 0} for c in cams],
            "outbox_depth": 5,
            "outbox_dropped": 0,
        }
    )


def test_audit_page_filters_and_exports_csv(page: Page, dash: Dash) -> None:
    log_in(page, dash)
    page.click("nav a[href='#/audit']")
    expect(page.locator("#audit-rows tr").first).to_be_visible()
    page.fill("#audit-action", "login")
    page.press("#audit-action", "Enter")
    page.locator("#audit-action").dispatch_event("change")
    expect(page.locator("#audit-rows tr").first).to_contain_text("登录")
    shot(page, "14-audit-zh")
    with page.expect_download() as got:
        page.click("#audit-csv")
    csv = Path(got.value.path()).read_text("utf-8").splitlines()
    assert csv[0] == "id,at,actor,role,action,entity,entity_id,reason,detail", csv[0]
    assert len(csv) > 1 and all(",login," in line for line in csv[1:]), csv[:3]
    # who: another user's logins are not there; when: the last hour still has them
    page.fill("#audit-actor", "no-such-user")
    page.locator("#audit-actor").dispatch_event("change")
    expect(page.locator("#audit-count")).to_have_text("共 0 条（最新优先）")
    expect(page.locator("#audit-rows tr")).to_have_count(0)
    page.fill("#audit-actor", ADMIN[0])
    page.locator("#audit-actor").dispatch_event("change")
    page.select_option("#audit-when", "1h")
    expect(page.locator("#audit-rows tr").first).to_contain_text(ADMIN[0])
    rows = page.locator("#audit-rows tr").all_inner_texts()
    assert rows and all(ADMIN[0] in r and "登录" in r for r in rows), rows


BADGES_JS = """() => {
  const probe = (cls, tag = 'span') => {
    const el = document.createElement(tag);
    el.className = cls;
    el.textContent = 'x';
    document.body.append(el);
    const st = getComputedStyle(el);
    const out = [cls, st.color, st.backgroundColor];
    el.remove();
    return out;
  };
  return [
    'badge', 'badge unconfirmed', 'badge confirmed', 'badge rejected', 'badge closed',
    'badge online', 'badge offline', 'badge escalating', 'badge overdue', 'badge late',
    'badge soon', 'badge lvl-warning', 'badge lvl-alarm', 'colour red', 'colour orange',
    'colour yellow', 'colour green', 'colour none', 'timer', 'timer overdue', 'live',
  ].map((c) => probe(c));
}"""


def contrast(fg: str, bg: str) -> float:
    """WCAG 2 contrast ratio of two CSS rgb() colours."""

    def luminance(css: str) -> float:
        r, g, b = (int(v) / 255 for v in re.findall(r"\d+", css)[:3])
        lin = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in (r, g, b)]
        return 0.2126 * lin[0] + 0.7152 * lin[1] + 0.0722 * lin[2]

    hi, lo = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_every_badge_has_at_least_3_to_1_contrast(page: Page, dash: Dash) -> None:
    page.goto(f"{dash.url}/")
    expect(page.locator("#login")).to_be_visible()
    low = [
        (cls, round(contrast(fg, bg), 2))
        for cls, fg, bg in page.evaluate(BADGES_JS)
        if contrast(fg, bg) < 3.0
    ]
    assert not low, f"badges below 3:1: {low}"
    assert contrast("rgb(255, 255, 255)", "rgb(240, 125, 0)") < 3.0  # the check can fail


def test_times_name_their_zone_where_sites_differ(page: Page, dash: Dash) -> None:
    page.goto(f"{dash.url}/")
    expect(page.locator("#login")).to_be_visible()
    shown = page.evaluate(
        """async () => {
          const dom = await import('./dom.js');
          dom.setSiteZones([{id: 'a', time_zone: 'Asia/Shanghai'}]);
          const at = '2026-12-02T16:05:09Z';
          const one = dom.fmtTime(at, 'a');
          dom.setSiteZones([
            {id: 'a', time_zone: 'Asia/Shanghai'}, {id: 'b', time_zone: 'Europe/London'},
          ]);
          return [one, dom.fmtTime(at, 'a'), dom.fmtTime(at, 'b')];
        }"""
    )
    assert shown == ["2026-12-03 00:05:09", "2026-12-03 00:05:09 UTC+8", "2026-12-02 16:05:09 UTC"]


PAGES = {
    "board": ("#/board", "#board"),
    "incident": (None, "#steps"),
    "sheds": ("#/sheds", ".bay"),
    "devices": ("#/devices", "#devices tr"),
    "enrol": ("#/enrol", "#enrol"),
    "watch-list": ("#/registry", "#persons"),
    "audit": ("#/audit", "#audit-rows"),
    "false-matches": ("#/false-matches", "#false-matches"),
}


@pytest.mark.parametrize("lang", LANGS)
def test_every_page_at_every_size_fits_and_speaks_one_language(dash: Dash, lang: str) -> None:
    """At 1440x900, 768x1024 and 390x844: no sideways scrolling, the primary actions on
    screen, no missing catalogue key, no untranslated English on zh-CN pages and no
    Chinese on English pages (beyond the data the tests typed in)."""
    now = dt.datetime.now(dt.UTC)
    reading = SensorReading(
        site=SITE, shed="shed-a", bay="b1", current_a=2.0, voltage_v=48.0,
        temperature_c=31.0, measured_at=now,
    )  # fmt: skip
    dash.send(health(now), reading)
    if not dash.incidents("shed"):
        dash.send(event(EventKind.SHED, "shed-cam", level="alarm", scores={"fire": 0.8}))
    watch = [i for i in dash.incidents("watchlist")]
    target = (watch or dash.incidents("shed"))[0].id
    problems: list[str] = []
    for size in SIZES:
        context, page = open_page(dash, lang, size)
        errors: list[str] = []
        page.on("pageerror", partial(_record, errors))
        try:
            log_in(page, dash)
            for name, (path, ready) in PAGES.items():
                page.goto(f"{dash.url}/{path or f'#/incident/{target}'}")
                expect(page.locator(ready).first).to_be_attached(timeout=15_000)
                if name == "board":
                    page.select_option("select[name=state]", "all")
                    expect(page.locator("tr.incident").first).to_be_visible(timeout=15_000)
                    fully_visible(page, "select[name=state]")
                    fully_visible(page, "tr.incident .timer")
                    if page.locator("tr.incident button.ack").count():
                        fully_visible(page, "tr.incident button.ack")
                page.wait_for_timeout(150)
                no_sideways_scroll(page, f"{name} {size} {lang}")
                if name == "incident":
                    fully_visible(page, "#steps h2")
                words = untranslated(page) if lang == "zh-CN" else chinese_on_page(page)
                if words:
                    problems.append(f"{name} at {size}: {words}")
                shot(page, f"{lang}-{size}-{name}")
            no_missing_keys(page)
        finally:
            context.close()
        assert not errors, f"JavaScript errors at {size}: {errors}"
    assert not problems, f"{lang} pages showing the other language: {problems}"


def _record(errors: list[str], exc: Any) -> None:
    errors.append(str(exc))


def test_zone_editor_fits_a_tablet(dash: Dash) -> None:
    for lang in LANGS:
        context, page = open_page(dash, lang, "tablet")
        try:
            log_in(page, dash)
            page.goto(f"{dash.url}/dashboard/zones.html#{SITE}/gate")
            expect(page.locator("#save")).to_be_visible()
            expect(page.locator("#snap-msg")).not_to_be_empty()
            no_sideways_scroll(page, f"zone editor {lang}")
            fully_visible(page, "#save")
            fully_visible(page, "#overlay")
            stage = page.locator(".stage").bounding_box()
            side = page.locator("#zone-status").bounding_box()
            assert stage and side and side["y"] >= stage["y"] + stage["height"], (stage, side)
            if lang == "zh-CN":
                assert not untranslated(page, frozenset({"loiter"})), untranslated(page)
                assert chinese_on_page(page), "the Chinese check finds nothing on a zh-CN page"
            else:
                assert not chinese_on_page(page), chinese_on_page(page)
            no_missing_keys(page)
            shot(page, f"{lang}-tablet-zones")
        finally:
            context.close()


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
    # A manager's refusal reads as a sentence in the language asked for.
    token = httpx.post(
        f"{dash.url}/api/v1/login/access-token",
        data={"username": "acme", "password": "acme-password"},
    ).json()["access_token"]
    res = httpx.get(
        f"{dash.url}/api/v1/persons",
        headers={"Authorization": f"Bearer {token}", "Accept-Language": "zh-CN"},
    )
    assert res.status_code == 403
    assert res.json()["message"] == "您的角色（物业管理员）无权执行此操作。", res.json()


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


def test_board_search_filters_sort_and_pages_on_a_phone_in_english(dash: Dash) -> None:
    """A wrong password refused in English; the board's search, kind and time-range
    filters, sort and paging, in English at 390x844. 25 closed loitering incidents on the
    gate camera (rows written to the hub's database: the correlation keeps one incident
    per camera, and this site has three) give two pages; one is an hour and a half old."""
    from ringwatch.hub.incident_tables import Incident as Row

    now = dt.datetime.now(dt.UTC)
    ids = "00000000-0000-4000-8000-{:012d}".format
    with dash.hub.sessions.begin() as session:
        for n in range(25):
            at = now - dt.timedelta(minutes=90 if n == 0 else n)
            session.add(
                Row(
                    id=ids(n), kind="loitering",
                    key=f"camera:gate:{n}", site_id=SITE, station_id="st-north",
                    manager_id="pm-acme", device_id=DEVICE, camera_id="gate",
                    colour="yellow", level=None, ring="perimeter", status="closed",
                    title=f"Loitering #{n:02d} at gate", first_seen=at, last_seen=at,
                    created_at=at, updated_at=at, closed_at=now, detail={},
                )
            )  # fmt: skip
    context, page = open_page(dash, "en", "phone")
    try:
        page.goto(f"{dash.url}/")
        page.fill("input[name=username]", ADMIN[0])
        page.fill("input[name=password]", "not-the-password")
        page.click("#login button[type=submit]")  # the hub's refusal, as an English sentence
        expect(page.locator("#login-error")).to_have_text("Incorrect user name or password.")
        log_in(page, dash)
        page.select_option("select[name=state]", "all")
        page.select_option("select[name=kind]", "loitering")
        info = page.locator("#page-info")
        expect(info).to_have_text("Page 1 of 2 (25 incidents)", timeout=15_000)
        expect(page.locator("tr.incident")).to_have_count(20)
        expect(page.locator("tr.incident").first).to_have_attribute("data-id", ids(1))  # newest
        expect(page.locator("tr.incident").first).to_have_class(re.compile(r"\binactive\b"))
        fully_visible(page, "#page-next")
        page.click("#page-next")
        expect(info).to_have_text("Page 2 of 2 (25 incidents)")
        expect(page.locator("tr.incident")).to_have_count(5)
        expect(page.locator("tr.incident").last).to_have_attribute("data-id", ids(0))  # oldest
        page.select_option("select[name=range]", "1h")  # back to page 1, without #00
        expect(info).to_have_text("Page 1 of 2 (24 incidents)")
        page.click("#page-next")
        expect(page.locator("tr.incident")).to_have_count(4)
        expect(page.locator(f"tr.incident[data-id='{ids(0)}']")).to_have_count(0)
        page.fill("#board-search", "#07")  # the stored title is searched too
        expect(page.locator("tr.incident")).to_have_count(1)
        expect(page.locator("tr.incident")).to_have_attribute("data-id", ids(7))
        page.fill("#board-search", "no such incident")
        expect(page.locator("#board-rows")).to_contain_text("No incidents")
        page.fill("#board-search", "")
        page.select_option("select[name=kind]", "")
        page.select_option("select[name=range]", "all")
        dash.send(event(EventKind.SHED, "shed-cam", level="alarm", scores={"fire": 0.8}))
        page.select_option("select[name=sort]", "colour")  # red first, then orange, yellow
        expect(page.locator("tr.incident").first).to_have_attribute("data-colour", "red")
        rank = {"red": 0, "orange": 1, "yellow": 2}
        colours = page.eval_on_selector_all("tr.incident", "rs => rs.map(r => r.dataset.colour)")
        ranks = [rank.get(c, 9) for c in colours]
        assert ranks == sorted(ranks), colours
        no_sideways_scroll(page, "board, filtered, phone, en")
        assert not chinese_on_page(page), chinese_on_page(page)
        no_missing_keys(page)
        shot(page, "en-phone-board-filtered")
    finally:
        context.close()


def test_reject_a_match_from_the_boards_row_on_a_tablet_in_english(dash: Dash) -> None:
    """In English at 768x1024: a watch-list row is rejected right from the board; without
    a reason the hub's refusal reads as a sentence; with one the row leaves the board."""
    context, page = open_page(dash, "en", "tablet")
    try:
        log_in(page, dash)
        page.select_option("select[name=state]", "active")
        page.select_option("select[name=kind]", "")
        page.select_option("select[name=range]", "all")
        page.fill("#board-search", "Alex")
        inject_match(dash, who=("alex-lacamoire.png", "Alex Lacamoire", "yellow"))
        row = page.locator("tr.incident[data-kind=watchlist]", has_text="Alex Lacamoire")
        expect(row).to_have_count(1, timeout=15_000)
        expect(row).to_contain_text("Watch-list: Alex Lacamoire")
        fully_visible(page, "tr.incident button.reject")
        row.locator("button.reject").click()  # first click asks for the reason
        expect(row.locator("input.reject-reason")).to_be_visible()
        row.locator("button.reject").click()  # empty: refused, in words
        expect(row.locator(".error")).to_have_text(
            "Reason: please fill this in (at least 1 character(s))."
        )
        row.locator("input.reject-reason").fill("Not him: the live face has a beard")
        row.locator("button.reject").click()
        expect(row).to_have_count(0)  # rejected: no longer active
        [incident] = [i for i in dash.incidents("watchlist") if "Lacamoire" in i.title]
        assert incident.status == "rejected"
        assert incident.decision_reason == "Not him: the live face has a beard"
        no_sideways_scroll(page, "board tablet en")
        assert not chinese_on_page(page), chinese_on_page(page)
        no_missing_keys(page)
    finally:
        context.close()
