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
