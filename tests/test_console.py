"""The duty console's server side: message catalogues complete in both languages, API
errors as sentences, site time zones, per-user language, and the safe workflow (close needs
a reason with steps left, undo within 10 s, suppression after a rejected match, a shed
still burning after close raised again). Real hub, real database (SQLite and PostgreSQL),
fake clock; the browser side is tests/test_dashboard_browser.py."""

# ruff: noqa: F811  (the ``desk`` fixture is imported from test_incidents)
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ringwatch.contract.messages import AlertLevel
from ringwatch.contract.topics import EventKind
from ringwatch.hub import i18n
from ringwatch.hub.console_tables import Suppression
from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.timezones import check_zone
from tests.test_incidents import Desk, desk, event, face  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parent.parent
PAGES = REPO / "hub" / "dashboard"
BASE = "/api/v1/incidents"


def _catalogues(folder: Path) -> dict[str, dict[str, str]]:
    return {
        lang: json.loads((folder / f"{lang}.json").read_text("utf-8")) for lang in i18n.LANGUAGES
    }


@pytest.mark.parametrize("folder", [PAGES / "i18n", REPO / "hub" / "locales"])
def test_both_languages_have_the_same_keys_and_placeholders(folder: Path) -> None:
    cats = _catalogues(folder)
    zh, en = cats["zh-CN"], cats["en"]
    assert set(zh) == set(en), f"missing in zh-CN: {set(en) - set(zh)}; in en: {set(zh) - set(en)}"
    for key in en:
        held = [set(re.findall(r"\{(\w+)\}", c[key])) for c in (en, zh)]
        assert held[0] == held[1], f"{folder.name}/{key}: placeholders {held}"
        assert zh[key].strip(), f"{key} is empty in zh-CN"


def test_every_key_a_page_uses_is_in_the_catalogue() -> None:
    keys = set(_catalogues(PAGES / "i18n")["en"])
    used: set[str] = set()
    for path in [*PAGES.glob("*.js"), *PAGES.glob("*.html")]:
        text = path.read_text("utf-8")
        used |= set(re.findall(r'\bt\(\s*"([a-z0-9_.-]+)"', text))
        used |= set(re.findall(r'data-i18n="([a-z0-9_.-]+)"', text))
    assert used, "no keys found: the scan is broken"
    assert not used - keys, sorted(used - keys)


def test_every_server_sentence_the_patterns_name_exists() -> None:
    keys = set(_catalogues(REPO / "hub" / "locales")["en"])
    named = {key for _pattern, key in i18n.PATTERNS} | {"error.other", "validation.other"}
    assert not named - keys, sorted(named - keys)


def test_pages_have_no_inline_scripts_or_styles() -> None:
    """A strict Content-Security-Policy (no 'unsafe-inline') must be able to apply."""
    for path in PAGES.glob("*.html"):
        text = path.read_text("utf-8")
        assert "<style" not in text and " style=" not in text, path.name
        assert not re.search(r"<script(?![^>]*\bsrc=)[^>]*>", text), path.name
    for path in PAGES.glob("*.js"):
        assert not re.search(r"\bstyle\s*[:=]\s*[\"'{]", path.read_text("utf-8")), path.name


@pytest.mark.parametrize(
    ("detail", "lang", "sentence"),
    [
        (
            "role property_manager may not do this",
            "zh-CN",
            "您的角色（物业管理员）无权执行此操作。",
        ),
        (
            "role property_manager may not do this",
            "en",
            "Your role (property manager) may not do this.",
        ),
        (
            [{"type": "string_too_short", "loc": ["body", "reason"], "ctx": {"min_length": 1}}],
            "zh-CN",
            "原因：请填写（至少1个字符）。",
        ),
        ("incident is closed already", "zh-CN", "该事件状态为已结束处置，不能再操作。"),
        (
            "stages not done: onsite_check, fire_service_called; closing anyway needs a reason",
            "zh-CN",
            "尚有未完成的步骤：现场核查、已报消防。如仍要结束处置，请填写原因。",
        ),
        (
            {"code": "several_faces", "message": "x: 2 faces"},
            "zh-CN",
            "照片被拒：检测到多张大小相近的人脸，且无人位于照片中央；请在照片上点击要布控的人脸"
            "（several_faces）。",
        ),
        ("something new", "zh-CN", "中心拒绝了此请求：something new"),
    ],
)
def test_api_errors_become_sentences(detail: object, lang: str, sentence: str) -> None:
    assert i18n.error_sentence(lang, detail) == sentence


def test_language_negotiation() -> None:
    assert i18n.negotiate("zh-CN,zh;q=0.9,en;q=0.8", "en") == "zh-CN"
    assert i18n.negotiate("en-GB,en;q=0.9", "zh-CN") == "en"
    assert i18n.negotiate("fr", "zh-CN") == "zh-CN"
    assert i18n.negotiate(None, "en") == "en"


def test_alert_titles_in_both_languages() -> None:
    shed = {"kind": "shed", "detail": {"shed": "shed-a"}, "camera": "cam", "ring": None}
    assert i18n.alert_title("zh-CN", shed) == "停车棚 shed-a：明火/传感器告警"
    person = {"kind": "watchlist", "detail": {"person": {"name": "Li Lei"}}, "ring": "inner"}
    assert i18n.alert_title("en", person) == "Watch-list: Li Lei"
    intrusion = {"kind": "intrusion", "detail": {}, "camera": "gate", "ring": "perimeter"}
    assert i18n.alert_title("zh-CN", intrusion) == "区域入侵：gate（周界圈）"


def test_site_time_zones_are_checked() -> None:
    assert check_zone("Asia/Shanghai") == "Asia/Shanghai"
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Base'"):
        check_zone("Mars/Base")
    with pytest.raises(ValueError, match="unknown time zone"):
        HubConfig.model_validate({"sites": [{"id": "s", "name": "S", "time_zone": "CST+8"}]})


def test_api_answers_in_the_language_asked_and_keeps_the_english_detail(desk: Desk) -> None:
    res = desk.client.get(
        "/api/v1/persons", headers={**desk.users["acme"], "Accept-Language": "zh-CN"}
    )
    assert res.status_code == 403
    assert res.json() == {
        "detail": "role property_manager may not do this",
        "message": "您的角色（物业管理员）无权执行此操作。",
    }
    plain = desk.client.get("/api/v1/persons", headers=desk.users["acme"])
    assert plain.json() == {"detail": "role property_manager may not do this"}
    sites = desk.client.get("/api/v1/sites", headers=desk.admin).json()
    assert {s["time_zone"] for s in sites} == {"Asia/Shanghai"}


def test_each_user_keeps_a_language_the_hub_default_until_chosen(desk: Desk) -> None:
    url = "/api/v1/dashboard/preferences"
    assert desk.client.get("/api/v1/dashboard/config").json()["default_language"] == "zh-CN"
    assert desk.client.get(url, headers=desk.admin).json() == {"language": "zh-CN", "chosen": False}
    res = desk.client.put(url, json={"language": "en"}, headers=desk.admin)
    assert res.status_code == 200
    assert desk.client.get(url, headers=desk.admin).json() == {"language": "en", "chosen": True}
    assert desk.client.get(url, headers=desk.users["acme"]).json()["language"] == "zh-CN"
    assert desk.client.put(url, json={"language": "fr"}, headers=desk.admin).status_code == 422


def _shed_incident(desk: Desk, seconds: float = 0) -> Incident:
    desk.send(
        event(EventKind.SHED, seconds, "shed-cam", level=AlertLevel.ALARM, scores={"fire": 0.9})
    )
    rows: list[Incident] = desk.rows(Incident, Incident.kind == "shed")
    [row] = [i for i in rows if i.status == "open"]
    return row


def test_closing_with_steps_left_needs_a_reason(desk: Desk) -> None:
    row = _shed_incident(desk)
    manager = desk.users["acme"]
    res = desk.client.post(f"{BASE}/{row.id}/close", json={}, headers=manager)
    assert res.status_code == 409
    assert (
        "stages not done: acknowledged, onsite_check, fire_service_called" in res.json()["detail"]
    )
    res = desk.client.post(f"{BASE}/{row.id}/close", json={"reason": "  "}, headers=manager)
    assert res.status_code == 409
    res = desk.client.post(f"{BASE}/{row.id}/close", json={"reason": "假警报"}, headers=manager)
    assert res.status_code == 200 and res.json()["status"] == "closed"
    stages = desk.rows(IncidentStage, IncidentStage.incident_id == row.id)
    assert all(s.cancelled for s in stages)


def test_closing_with_every_step_done_needs_no_reason(desk: Desk) -> None:
    row = _shed_incident(desk)
    for stage in ("acknowledged", "onsite_check", "fire_service_called"):
        res = desk.client.post(f"{BASE}/{row.id}/steps/{stage}", json={}, headers=desk.admin)
        assert res.status_code == 200, res.text
    assert (
        desk.client.post(f"{BASE}/{row.id}/close", json={}, headers=desk.admin).status_code == 200
    )


def test_a_step_can_be_undone_by_its_author_within_10_seconds(desk: Desk) -> None:
    row = _shed_incident(desk)
    step = f"{BASE}/{row.id}/steps/acknowledged"
    assert desk.client.post(step, json={}, headers=desk.users["acme"]).status_code == 200
    desk.clock.advance(4)
    assert desk.client.post(f"{step}/undo", headers=desk.admin).status_code == 409  # not theirs
    assert desk.client.post(f"{step}/undo", headers=desk.users["acme"]).status_code == 200
    [stage] = desk.rows(
        IncidentStage, IncidentStage.incident_id == row.id, IncidentStage.name == "acknowledged"
    )
    assert stage.done_at is None and stage.done_by is None
    assert desk.client.post(step, json={}, headers=desk.users["acme"]).status_code == 200
    desk.clock.advance(11)
    res = desk.client.post(f"{step}/undo", headers=desk.users["acme"])
    assert res.status_code == 409 and "within 10 s" in res.json()["detail"]


def test_a_rejected_match_keeps_that_person_on_that_camera_quiet(desk: Desk) -> None:
    _pid, vec = desk.person("Red Person", "red")
    officer = desk.users["north-officer"]
    desk.send(face(vec, 0))
    [first] = desk.rows(Incident, Incident.kind == "watchlist")
    desk.clock.advance(20)
    res = desk.client.post(
        f"{BASE}/{first.id}/reject", json={"reason": "不是此人"}, headers=officer
    )
    assert res.status_code == 200, res.text
    desk.clock.advance(1)
    desk.send(face(vec, 21), face(vec, 22))  # the same look-alike, a second later
    assert len(desk.rows(Incident, Incident.kind == "watchlist")) == 1, "a new alert fired"
    [quiet] = desk.rows(Suppression)
    assert (quiet.camera_id, quiet.hits) == ("gate", 2)
    assert (quiet.until - quiet.created_at).total_seconds() == 600
    shown = desk.client.get(f"{BASE}/{first.id}", headers=officer).json()["suppression"]
    assert shown["active"] and shown["hits"] == 2
    report = desk.client.get(f"{BASE}/reports/false-matches", headers=officer).json()
    assert [(r["camera"], r["rejected"], r["suppressed_on_camera"]) for r in report] == [
        ("gate", 1, 2)
    ]
    audit = desk.client.get("/api/v1/audit?entity=incident", headers=desk.admin).json()
    actions = [a["action"] for a in audit if a["entity_id"] == first.id]
    assert "suppress" in actions and "suppressed" in actions
    desk.clock.advance(600)  # the quiet time is over: he alerts again
    desk.send(face(vec, 622))
    assert len(desk.rows(Incident, Incident.kind == "watchlist")) == 2


def test_a_shed_still_burning_after_close_is_raised_again(desk: Desk) -> None:
    row = _shed_incident(desk)
    res = desk.client.post(
        f"{BASE}/{row.id}/close", json={"reason": "处理完毕"}, headers=desk.admin
    )
    assert res.status_code == 200
    desk.clock.advance(10)
    desk.incidents.tick(desk.clock())
    assert [i.status for i in desk.rows(Incident, Incident.kind == "shed")] == ["closed"]
    desk.clock.advance(25)  # 30 s after the close: the edge never sent an "end"
    desk.incidents.tick(desk.clock())
    rows = sorted(desk.rows(Incident, Incident.kind == "shed"), key=lambda i: i.created_at)
    assert [i.status for i in rows] == ["closed", "open"]
    assert rows[1].level == "alarm" and not rows[1].late
    desk.clock.advance(60)
    desk.incidents.tick(desk.clock())
    assert len(desk.rows(Incident, Incident.kind == "shed")) == 2, "raised once, not every tick"


def test_a_shed_that_ended_before_close_stays_closed(desk: Desk) -> None:
    row = _shed_incident(desk)
    desk.send(event(EventKind.SHED, 5, "shed-cam", level=AlertLevel.ALARM, phase="end"))
    desk.client.post(f"{BASE}/{row.id}/close", json={"reason": "已扑灭"}, headers=desk.admin)
    desk.clock.advance(60)
    desk.incidents.tick(desk.clock())
    assert [i.status for i in desk.rows(Incident, Incident.kind == "shed")] == ["closed"]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_the_console_migration_matches_its_tables(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path
) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ringwatch.hub import console_tables  # noqa: F401  (its tables in the metadata)
    from ringwatch.hub.db import make_engine, migrate
    from ringwatch.hub.tables import Base
    from tests.hub_fixtures import database

    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        engine = make_engine(url)
        migrate(engine)
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
        engine.dispose()
    ours = [d for d in diff if re.search(r"console_|match_suppressions|time_zone", repr(d))]
    assert not ours, ours
