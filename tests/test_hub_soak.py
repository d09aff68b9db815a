"""A short `hub soak` (bounded: 400 messages): two real `hub serve` processes on a fresh
PostgreSQL schema behind a private Mosquitto, 4 outbox/uplink edges, worker 1 and the
broker SIGKILLed mid-stream and restarted. Nothing lost, nothing doubled, every incident
and escalation once. The full runs (5,000 messages, NATS and Mosquitto) are in docs/scale.md."""

from __future__ import annotations

from ringwatch.hub.soak import run_soak, table


def test_a_short_soak_with_a_worker_and_the_broker_killed_loses_and_doubles_nothing(
    pg_url: str,
) -> None:
    result = run_soak("mosquitto", 2, 400, pg_url)
    shown = table([result])
    assert result.sent > 0 and result.stored == result.sent, shown
    doubled = (
        result.lost,
        result.doubled,
        result.incidents_doubled,
        result.alerts_doubled,
        result.webhooks_doubled,
        result.escalations_doubled,
    )
    assert doubled == (0, 0, 0, 0, 0, 0), shown
    assert result.incidents_made == result.incidents_expected > 0, shown
    assert result.escalations_sent == result.escalations_expected > 0, shown
    assert result.webhooks_sent == result.webhooks_expected > 0, shown
    assert any("SIGKILLed worker w1" in n for n in result.notes), shown


def test_the_webhook_columns_count_resends_apart_from_what_a_recipient_cannot_drop() -> None:
    """Posting to the soak's real receiver: a repeat of one alert_id is a resend (the
    recipient drops it); a POST without a matching Idempotency-Key, an alert_id the hub
    never queued, or one incident's ``new`` alert under a second id is doubled."""
    import json
    import urllib.request

    from ringwatch.hub.soak import Recipients, SoakResult, _webhook_counts

    recipients = Recipients()

    def post(body: dict[str, object], key: str) -> None:
        request = urllib.request.Request(
            recipients.url,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json", "Idempotency-Key": key},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=5) as response:
            assert response.status == 200

    try:
        a = {"alert_id": "a", "incident_id": 1, "reason": "new"}
        post(a, "a")
        post(a, "a")  # resent after an unknown outcome: same id
        post({"alert_id": "b", "incident_id": 1, "reason": "missed"}, "b")
        result = SoakResult("nats", 3)
        _webhook_counts(recipients, {"a", "b", "c"}, result)
        assert (result.webhooks_resent, result.webhooks_doubled) == (1, 0)

        post({"alert_id": "c", "incident_id": 1, "reason": "new"}, "c")  # 'new' twice
        post({"alert_id": "z", "incident_id": 2, "reason": "new"}, "z")  # never queued
        post({"alert_id": "b", "incident_id": 1, "reason": "missed"}, "other")  # bad key
        result = SoakResult("nats", 3)
        _webhook_counts(recipients, {"a", "b", "c"}, result)
        assert (result.webhooks_resent, result.webhooks_doubled) == (1, 3), result.notes
    finally:
        recipients.close()


def test_the_private_postgresql_starts_answers_and_is_removed() -> None:
    """Without --pg-url the soak runs on its own cluster (Debian's initdb + pg_ctl)."""
    import sqlalchemy as sa

    from ringwatch.hub.soak import PrivatePostgres

    pg = PrivatePostgres().start()
    where = pg.dir
    try:
        engine = sa.create_engine(pg.url)
        with engine.connect() as conn:
            assert conn.execute(sa.text("show port")).scalar() == str(pg.port)
        engine.dispose()
    finally:
        pg.stop()
    assert not where.exists()
