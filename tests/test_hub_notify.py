"""E-mail (a real SMTP server: aiosmtpd) and SMS/IM gateway (a real HTTP server) alerts:
per recipient, in the recipient's language (en or zh-CN), retried like webhooks, exactly once
across hub restarts, and a missed stage escalated to the supervisor's phone."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import json
import re
import threading
from collections.abc import Iterator
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from fastapi.testclient import TestClient
from pydantic import ValidationError

from ringwatch.contract.colours import Colour, Tier
from ringwatch.contract.media import MediaKind
from ringwatch.contract.messages import AlertLevel
from ringwatch.contract.topics import EventKind
from ringwatch.contract.zones import ZoneRole
from ringwatch.hub import export, i18n, notify, terms
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.incident_tables import Delivery
from ringwatch.hub.incidents import Status
from ringwatch.hub.ingest import Inbound, Ingestor, IngestStats
from ringwatch.hub.notify_config import ContactConfig
from ringwatch.hub.routing import Reason
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.stages import IncidentKind, default_plans
from ringwatch.hub.timezones import site_time
from tests.hub_fixtures import SECRET, database
from tests.services import free_port
from tests.test_incidents import T0, FakeClock, _topic, event, incident_config


class Mailbox:
    """aiosmtpd handler: every message the SMTP server accepted."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = email.message_from_bytes(envelope.content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 OK"


@pytest.fixture
def smtp() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    port = free_port()
    controller = Controller(box, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield box, port
    finally:
        controller.stop()


class Gateway:
    """A real HTTP SMS gateway that fails the first ``fail`` requests with 503."""

    def __init__(self, fail: int) -> None:
        self.fail = fail
        self.posts: list[tuple[dict[str, str], dict[str, Any]]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.posts.append((dict(self.headers), body))
                code = 503 if outer.fail > 0 else 202
                outer.fail -= 1
                self.send_response(code)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    gw = Gateway(fail=1)
    yield gw
    gw.close()


class Hubs:
    """Starts and stops the hub on one database, as a restart would."""

    def __init__(self, url: str, smtp_port: int, gateway: str, clock: FakeClock) -> None:
        self.settings = HubSettings(
            database_url=url, jwt_secret=SECRET, template_key=SECRET,
            smtp_url=f"smtp://127.0.0.1:{smtp_port}", smtp_from="alerts@ringwatch.test",
        )  # fmt: skip
        self.config = incident_config(
            public_url="https://ringwatch.test",
            contacts=[
                {"recipient": "st-north", "email": "duty@north.test", "language": "en"},
                {"recipient": "north-sgt", "email": "sgt@north.test", "language": "zh-CN",
                 "gateway_url": gateway, "address": "+8613800000001", "gateway_token": "t0k"},
            ],
        )  # fmt: skip
        self.clock = clock

    def run(self, *steps: Any) -> None:
        """One hub life: start, do ``steps`` (events or 'tick'), stop."""
        app = create_app(self.settings, self.config, clock=self.clock, ingest=False)
        hub: Hub = app.state.hub
        with TestClient(app):
            assert hub.incidents is not None
            ingestor = Ingestor(hub.sessions, hub.matcher, self.clock, IngestStats(),
                                hub.incidents.on_stored)  # fmt: skip
            for step in steps:
                if step == "tick":
                    hub.incidents.tick(self.clock())
                else:
                    assert not ingestor.ingest(
                        [Inbound(_topic(step), step.model_dump_json().encode())]
                    ).dead
            self.deliveries = _rows(hub)


def _rows(hub: Hub) -> list[Delivery]:
    import sqlalchemy as sa

    with hub.sessions() as session:
        return list(session.scalars(sa.select(Delivery).order_by(Delivery.id)))


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_email_and_gateway_alerts_are_sent_once_across_restarts_and_escalate(
    request: pytest.FixtureRequest,
    backend: str,
    tmp_path: Path,
    smtp: tuple[Mailbox, int],
    gateway: Gateway,
) -> None:
    box, port = smtp
    pg = request.getfixturevalue("pg_url") if backend == "postgresql" else None
    with database(backend, tmp_path, pg) as url:
        clock = FakeClock(T0)
        hubs = Hubs(url, port, gateway.url, clock)
        hubs.run(event(EventKind.INTRUSION, 0, "gate"))  # queued, then the hub stops
        assert [d.status for d in hubs.deliveries if d.channel == "email"] == ["pending"]
        assert box.messages == []
        hubs.run("tick")  # restarted: sends what was queued
        hubs.run("tick", "tick")  # and again: nothing is sent twice
        assert len(box.messages) == 1
        mail = box.messages[0]
        assert mail["To"] == "duty@north.test" and mail["Content-Language"] == "en"
        assert mail["Subject"].startswith("[Ringwatch] New alert: ORANGE")
        body = mail.get_content()
        assert isinstance(body, str) and "https://ringwatch.test/#/incident/" in body
        assert gateway.posts == [], "the station has no gateway contact"

        # The first stage (1 minute) is missed: the supervisor hears it in Chinese, by
        # e-mail and on the phone; the gateway's first answer is a 503, retried after 2 s.
        clock.advance(61)
        hubs.run("tick")
        clock.advance(2)
        hubs.run("tick")
        hubs.run("tick", "tick")  # another restart: nothing more
    mails = [m for m in box.messages if m["To"] == "sgt@north.test"]
    assert len(mails) == 1 and mails[0]["Content-Language"] == "zh-CN"
    subject, zh_body = mails[0]["Subject"], mails[0].get_content()
    assert subject.startswith("[Ringwatch] 处置环节超时：橙色预警 "), subject
    assert isinstance(zh_body, str)
    for words in (
        "区域入侵",
        "地点 campus-n",
        "摄像机 gate",
        "防控圈 周界圈",
        "状态 待处置",
        "查看详情：https://ringwatch.test/#/incident/",
        "请勿直接回复",
        # the incident's time on the site's clock (Asia/Shanghai, no daylight saving), not UTC
        f"发生时间 {T0 + dt.timedelta(hours=8):%Y-%m-%d %H:%M:%S} UTC+8",
    ):
        assert words in zh_body, (words, zh_body)
    _no_french(subject + zh_body)
    assert len(gateway.posts) == 2, "one failed attempt, one success, nothing after"
    keys = {h["Idempotency-Key"] for h, _ in gateway.posts}
    assert len(keys) == 1 and {h["X-Ringwatch-Token"] for h, _ in gateway.posts} == {"t0k"}
    sms = gateway.posts[1][1]
    assert (sms["to"], sms["language"], sms["reason"]) == ("+8613800000001", "zh-CN", "missed")
    assert sms["text"].startswith("处置环节超时：") and "区域入侵" in sms["text"]
    [sent] = [d for d in hubs.deliveries if d.channel == "gateway"]
    assert (sent.status, sent.attempts) == ("sent", 2)
    ids = {m["Message-ID"] for m in box.messages}
    assert len(ids) == len(box.messages) == 2
    assert len({d.incident_id for d in hubs.deliveries}) == 1


FRENCH = re.compile(r"[àâçéèêëîïôûùüÿœæÀÂÇÉÈÊËÎÏÔÛÙÜŸŒÆ]|\b(?:alerte|dossier|étape|à)\b", re.I)


def _no_french(text: str) -> None:
    assert not FRENCH.search(text), f"French left in: {text!r}"


def test_catalogues_are_english_and_chinese_only_with_the_same_keys() -> None:
    """A key missing in one language fails here, and so does any word the hub shows for a
    stored value (kind, colour, level, ring, status, stage, point role, media kind)."""
    for catalogue in (notify.TEXT, export.TEXT, terms.TERMS):
        assert tuple(catalogue) == terms.LANGUAGES == ("en", "zh-CN")
        en, zh = catalogue["en"], catalogue["zh-CN"]
        assert set(en) == set(zh), set(en) ^ set(zh)
        assert all(v.strip() for v in [*en.values(), *zh.values()])
        for key, text in zh.items():
            _no_french(text)
            # Chinese words, or at least Chinese (full-width) punctuation in a template
            assert re.search(r"[\u3000-\u303f\u4e00-\u9fff\uff00-\uffef]", text), (key, text)
            assert re.findall(r"{(\w+)}", text) == re.findall(r"{(\w+)}", en[key]), key
    assert set(Reason) <= set(notify.TEXT["en"])
    stages = {s.name for plan in default_plans().values() for s in plan}
    values = {
        "kind": set(IncidentKind),
        "colour": {*Colour, *Tier}, "level": set(AlertLevel), "ring": set(ZoneRole),
        "status": {Status.OPEN, Status.CONFIRMED, Status.REJECTED, Status.CLOSED},
        "stage": stages, "role": {"sighting", "event", "person"}, "media": set(MediaKind),
    }  # fmt: skip
    for what, found in values.items():
        missing = {v for v in found if f"{what}:{v}" not in terms.TERMS["zh-CN"]}
        assert not missing, (what, missing)


def test_glossary_terms_in_a_chinese_alert_and_the_language_is_checked() -> None:
    alert = {"alert_id": "a1", "incident_id": "i1", "reason": "new", "kind": "watchlist",
             "status": "confirmed", "colour": "red", "level": None, "site": "campus-n",
             "camera": "gate", "ring": "inner", "title": "Watch-list: X",
             "created_at": "2026-01-01T08:00:00+00:00"}  # fmt: skip
    subject, text = notify.render(alert, "zh-CN", None)
    assert subject == "[Ringwatch] 新告警：红色预警 Watch-list: X"
    assert "重点人员比中，地点 campus-n，摄像机 gate，防控圈 内圈" in text and "已确认" in text
    shed = {**alert, "kind": "shed", "colour": None, "level": "alarm", "ring": None,
            "reason": "closed", "status": "closed"}  # fmt: skip
    subject, text = notify.render(shed, "zh-CN", None)
    assert subject.startswith("[Ringwatch] 已结束处置：告警 ") and "电动车智慧停车棚告警" in text
    assert notify.render(alert, "en", None)[0] == "[Ringwatch] New alert: RED Watch-list: X"
    assert ContactConfig(recipient="st-north", email="a@b.c").language == "zh-CN"
    assert ContactConfig(recipient="st-north", email="a@b.c", language="en")
    assert ContactConfig(recipient="st-north", email="a@b.c", language="zh-CN")
    for wrong in ("fr", "zh", "zh-TW"):
        with pytest.raises(ValidationError):
            ContactConfig(recipient="st-north", email="a@b.c", language=wrong)


def test_a_message_names_the_time_on_the_site_clock() -> None:
    alert = {
        "alert_id": "a1",
        "incident_id": "i1",
        "reason": "new",
        "kind": "intrusion",
        "status": "open",
        "colour": "orange",
        "level": None,
        "site": "campus-n",
        "camera": "gate",
        "ring": "perimeter",
        "title": "Intrusion",
        "created_at": "2026-01-01T20:30:05",
    }  # fmt: skip  (stored naive: UTC)
    _, zh = notify.render(alert, "zh-CN", None, "Asia/Shanghai")
    assert "发生时间 2026-01-02 04:30:05 UTC+8" in zh, zh  # the next day in Beijing
    _, en = notify.render(alert, "en", None, "Asia/Kolkata")
    assert "2026-01-02 02:00:05 UTC+5:30" in en, en
    assert site_time("2026-07-01T12:00:00+00:00", "America/New_York") == "2026-07-01 08:00:00 UTC-4"
    assert site_time(dt.datetime(2026, 1, 1, 12), "UTC") == "2026-01-01 12:00:00 UTC"
    assert site_time(None, "Asia/Shanghai") == ""


def test_alerts_the_api_and_the_console_use_one_word_for_each_value() -> None:
    """An SMS, a case file, an API sentence and the board name a kind, level, ring, status,
    stage or media kind with the same word (they came from three lists before), and no
    word is written a second time in the API's catalogue."""
    for language in terms.LANGUAGES:
        console = json.loads((i18n.CONSOLE / f"{language}.json").read_text("utf-8"))
        server = json.loads((i18n.LOCALES / f"{language}.json").read_text("utf-8"))
        words = i18n.value_words(language)
        assert {"kind.watchlist", "stage.acknowledged", "ring.inner", "media.clip"} <= set(words)
        for key, word in words.items():
            assert console[key].casefold() == word.casefold(), (language, key)
            assert i18n.catalogue(language)[key] == word, (language, key)
            group, _, value = key.partition(".")
            if group in terms.CONSOLE_GROUPS:
                assert terms.TERMS[language][f"{group}:{value}"] == word, (language, key)
        assert not set(server) & set(words), "a value word written twice"
    assert terms.term("zh-CN", "kind", "watchlist") == "重点人员比中"
    assert terms.term("zh-CN", "status", "closed") == "已结束处置"  # the glossary's 结束处置
    assert terms.term("zh-CN", "media", "clip") == "录像片段"
    assert terms.term("en", "stage", "acknowledged") == "acknowledged"  # inside a sentence
