"""Webhook delivery against a real local HTTP server that fails twice, then succeeds: with the
time injected (no sleeping) the dispatcher retries on the backoff schedule, the receiver
accepts exactly one delivery, and every attempt is recorded. SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from ringwatch.contract.colours import ColourPolicy
from ringwatch.contract.topics import EventKind
from ringwatch.hub import crud
from ringwatch.hub.db import SessionFactory, make_engine, migrate, session_factory
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.incident_runtime import IncidentRuntime
from ringwatch.hub.incident_tables import Delivery, DeliveryAttempt, Incident
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.routing import DeliveryStatus
from ringwatch.hub.webhooks import (
    Dispatcher,
    HttpResult,
    UrllibTransport,
    connection_kind,
    delivery_summary,
)
from tests.hub_fixtures import BACKENDS, HUB_CONFIG, database
from tests.test_incidents import T0, FakeClock, event


class FlakyReceiver:
    """A real HTTP server: answers 503 to the first ``failures`` POSTs, then 200."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.requests: list[tuple[int, dict[str, str], dict[str, Any]]] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                code = 503 if len(receiver.requests) < receiver.failures else 200
                receiver.requests.append((code, dict(self.headers), body))
                self.send_response(code)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    @property
    def accepted(self) -> list[dict[str, Any]]:
        return [body for code, _, body in self.requests if code == 200]

    def __enter__(self) -> FlakyReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@pytest.fixture(params=BACKENDS)
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        yield url


@pytest.fixture
def sessions(db_url: str) -> Iterator[SessionFactory]:
    """A migrated hub database holding HUB_CONFIG's sites, stations and managers."""
    engine = make_engine(db_url)
    migrate(engine)
    factory = session_factory(engine)
    with factory.begin() as session:
        crud.apply_config(session, HubConfig.model_validate(HUB_CONFIG))
    yield factory
    engine.dispose()


def test_a_receiver_failing_twice_then_succeeding_gets_exactly_one_delivery(
    sessions: SessionFactory,
) -> None:
    clock = FakeClock(T0)
    published: list[str] = []

    def publish(topic: str, payload: bytes) -> bool:
        published.append(topic)
        return True

    with FlakyReceiver(failures=2) as receiver:
        config = IncidentsConfig.model_validate(
            {
                "timer_loop": False,
                "webhooks": [{"url": receiver.url, "secret_header": "s3cret"}],
                "retry": {"first_s": 2, "factor": 2, "max_s": 60, "attempts": 5},
            }
        )
        incidents = IncidentRuntime(
            sessions,
            config,
            ColourPolicy(),
            clock,
            publish=publish,
            transport=UrllibTransport(),
        )
        incidents.on_stored([event(EventKind.INTRUSION, 0, "gate")], clock())
        [incident] = _all(sessions, Incident)

        schedule = [(0, 1), (1, 0), (2, 1), (5, 0), (6, 1), (100, 0), (1000, 0)]
        for seconds, expected_attempts in schedule:
            clock.now = T0 + dt.timedelta(seconds=seconds)
            attempted = incidents.dispatcher.dispatch(clock())
            webhook_attempts = expected_attempts + (1 if seconds == 0 else 0)  # + MQTT
            assert attempted == webhook_attempts, f"at {seconds} s"
            if seconds == 5:  # two 503s so far: why, in a word the console translates
                [waiting] = [d for d in _all(sessions, Delivery) if d.channel == "webhook"]
                assert waiting.last_error_kind == "server_error"
                assert waiting.last_error == "HTTP 503 Service Unavailable"

        assert [code for code, _, _ in receiver.requests] == [503, 503, 200]
        [body] = receiver.accepted
        assert body["incident_id"] == incident.id and body["reason"] == "new"
        keys = {headers["Idempotency-Key"] for _, headers, _ in receiver.requests}
        assert keys == {body["alert_id"]}, "the same alert id on every retry"
        assert {h["X-Ringwatch-Token"] for _, h, _ in receiver.requests} == {"s3cret"}
        assert published == ["ringwatch/v1/alerts/station/st-north"]

    [hook] = [d for d in _all(sessions, Delivery) if d.channel == "webhook"]
    assert (hook.status, hook.attempts) == (DeliveryStatus.SENT, 3)
    assert hook.sent_at == T0 + dt.timedelta(seconds=6)
    assert hook.last_error is None and hook.last_error_kind is None
    tries = sorted(_all(sessions, DeliveryAttempt), key=lambda a: a.at)
    webhook_tries = [(a.at, a.ok, a.status_code) for a in tries if a.delivery_id == hook.id]
    assert webhook_tries == [
        (T0, False, 503),
        (T0 + dt.timedelta(seconds=2), False, 503),
        (T0 + dt.timedelta(seconds=6), True, 200),
    ]


def test_an_unreachable_webhook_is_given_up_after_its_attempts(sessions: SessionFactory) -> None:
    with FlakyReceiver(failures=0) as receiver:
        dead_url = receiver.url  # the port is closed once the server is gone
    clock = FakeClock(T0)
    config = IncidentsConfig.model_validate(
        {"timer_loop": False, "webhooks": [{"url": dead_url}], "retry": {"attempts": 3}}
    )
    incidents = IncidentRuntime(sessions, config, ColourPolicy(), clock)
    incidents.on_stored([event(EventKind.LOITERING, 0, "gate")], clock())
    for seconds in (0, 2, 6, 14, 30):
        incidents.dispatcher.dispatch(T0 + dt.timedelta(seconds=seconds))
    [hook] = [d for d in _all(sessions, Delivery) if d.channel == "webhook"]
    assert (hook.status, hook.attempts) == (DeliveryStatus.GIVEN_UP, 3)
    assert hook.last_error is not None and "Connection refused" in hook.last_error
    assert hook.last_error_kind == "unreachable"
    assert delivery_summary(hook)["error_kind"] == "unreachable"


def test_an_alert_the_broker_does_not_take_waits_for_it_and_says_why(
    sessions: SessionFactory,
) -> None:
    clock = FakeClock(T0)
    broker_up = False

    def publish(topic: str, payload: bytes) -> bool:
        return broker_up

    config = IncidentsConfig.model_validate({"timer_loop": False, "retry": {"attempts": 2}})
    incidents = IncidentRuntime(sessions, config, ColourPolicy(), clock, publish=publish)
    incidents.on_stored([event(EventKind.INTRUSION, 0, "gate")], clock())
    for seconds in (0, 2, 6, 14):  # more tries than a webhook's 2: MQTT waits
        incidents.dispatcher.dispatch(T0 + dt.timedelta(seconds=seconds))
    [mqtt] = [d for d in _all(sessions, Delivery) if d.channel == "mqtt"]
    assert (mqtt.status, mqtt.attempts) == (DeliveryStatus.PENDING, 4)
    assert (mqtt.last_error, mqtt.last_error_kind) == ("broker did not take it", "broker_away")
    broker_up = True
    incidents.dispatcher.dispatch(T0 + dt.timedelta(seconds=600))
    [mqtt] = [d for d in _all(sessions, Delivery) if d.channel == "mqtt"]
    assert mqtt.status == DeliveryStatus.SENT and mqtt.last_error_kind is None


def test_a_failed_attempt_names_its_kind() -> None:
    import urllib.error

    assert connection_kind(urllib.error.URLError(TimeoutError("timed out"))) == "timeout"
    assert connection_kind(urllib.error.URLError(ConnectionRefusedError(111, "refused"))) == (
        "unreachable"
    )
    assert connection_kind(ValueError("unknown url type: 'htp'")) == "bad_address"
    assert connection_kind(OSError("No route to host")) == "unreachable"
    with pytest.raises(ValueError, match="not one of"):
        HttpResult(None, "x", "broken")


def test_a_second_worker_dispatching_during_a_slow_round_sends_nothing_twice(
    sessions: SessionFactory,
) -> None:
    """Worker A's round has 3 webhooks and each POST takes 0.6 claim leases (time injected,
    no sleeping; a POST is bounded by the timeout, half a lease). During A's second POST,
    worker B dispatches at 1.1 leases. B takes only what A has not claimed yet (the third);
    A, once its POST returns, finds nothing more due. Each alert id reaches the receiver
    once. Claiming the whole round up front let B take A's second and third deliveries
    (their lease, counted from the round's start, had run out) and both sent them."""
    clock = FakeClock(T0)
    with FlakyReceiver(failures=0) as receiver:
        config = IncidentsConfig.model_validate(
            {"timer_loop": False, "webhooks": [{"url": receiver.url}]}
        )
        incidents = IncidentRuntime(sessions, config, ColourPolicy(), clock)
        incidents.on_stored(
            [
                event(EventKind.INTRUSION, 0, "gate"),
                event(EventKind.LOITERING, 0, "gate"),
                event(EventKind.INTRUSION, 0, "door"),
            ],
            clock(),
        )
        worker_b = Dispatcher(sessions, config.retry, UrllibTransport())
        lease = worker_b._claim_s()
        a_elapsed = [0.0]
        b_attempted: list[int] = []

        class SlowPosts(UrllibTransport):
            def post(
                self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
            ) -> HttpResult:
                a_elapsed[0] += 0.6 * lease
                if a_elapsed[0] > lease and not b_attempted:
                    later = T0 + dt.timedelta(seconds=1.1 * lease)
                    b_attempted.append(worker_b.dispatch(later))
                return super().post(url, body, headers, timeout_s)

        worker_a = Dispatcher(sessions, config.retry, SlowPosts())
        worker_a.monotonic = lambda: a_elapsed[0]
        a_attempted = worker_a.dispatch(T0)
        hooks = [d for d in _all(sessions, Delivery) if d.channel == "webhook"]
        assert len(hooks) == 3
        assert (a_attempted, b_attempted) == (2, [1])
        ids = [body["alert_id"] for body in receiver.accepted]
        assert sorted(ids) == sorted(h.alert_id for h in hooks), "each alert id once"
        assert {h.status for h in hooks} == {DeliveryStatus.SENT}
        assert {h.attempts for h in hooks} == {1}


def _all(sessions: Any, model: Any) -> list[Any]:
    with sessions() as session:
        return list(session.scalars(sa.select(model)))
