"""The hub's Prometheus endpoint (hub/metrics.py): a real hub app on SQLite and PostgreSQL,
events through the real ingest, scraped at /metrics and parsed with prometheus-client's
own parser; plus the naming conventions and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from ringwatch.contract.messages import encode
from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub.ingest import Inbound, Ingestor
from tests.test_incidents import Desk, desk, event, face  # noqa: F401  (desk: a fixture)

REPO = Path(__file__).resolve().parent.parent


def scrape(desk: Desk) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:  # noqa: F811
    res = desk.client.get("/metrics")
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples = {}
    for family in text_string_to_metric_families(res.text):
        for s in family.samples:
            samples[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return samples


def value(
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str, **labels: str
) -> float:
    key = (name, tuple(sorted({"worker": "hub-1", **labels}.items())))
    return samples.get(key, 0.0)


def test_metrics_follow_the_ingest_incidents_stages_and_deliveries(desk: Desk) -> None:  # noqa: F811
    hub = desk.hub
    ingest = Ingestor(hub.sessions, hub.matcher, desk.clock, hub.stats, hub._stored)
    _pid, vector = desk.person("Metric Person", "red")
    batch = [
        event(EventKind.INTRUSION, 0, "gate", ring="perimeter"),
        face(vector, 1),
        event(EventKind.TAMPER, 2, "gate", detail="camera covered"),
    ]
    desk.clock.advance(3)
    ingest.ingest([Inbound(event_topic(e.site, e.device, e.kind), encode(e)) for e in batch])
    ingest.ingest([Inbound(event_topic("campus-n", "box-1", EventKind.ZONE), b"{not json")])
    samples = scrape(desk)

    assert value(samples, "ringwatch_hub_events_received_total") == 4
    assert value(samples, "ringwatch_hub_events_stored_total") == 3
    assert value(samples, "ringwatch_hub_sightings_total") == 1
    [(dead_reason, dead_n)] = [
        (dict(k[1])["reason"], v)
        for k, v in samples.items()
        if k[0] == "ringwatch_hub_dead_letters_total"
    ]
    assert dead_n == 1 and dead_reason
    assert value(samples, "ringwatch_hub_ingest_lag_seconds_count") == 3
    assert value(samples, "ringwatch_hub_ingest_lag_seconds_sum") >= 3 * 1.0  # 3, 2, 1 s old
    assert value(samples, "ringwatch_hub_match_duration_seconds_count") >= 1
    assert value(samples, "ringwatch_hub_incidents_active", kind="intrusion", colour="orange") == 1
    assert value(samples, "ringwatch_hub_incidents_active", kind="watchlist", colour="red") == 1
    assert (
        value(samples, "ringwatch_hub_incidents_active", kind="camera_tamper", colour="none") == 1
    )
    sent = sum(v for k, v in samples.items() if k[0] == "ringwatch_hub_deliveries")
    assert (
        sent >= 3
        and value(samples, "ringwatch_hub_deliveries", channel="mqtt", status="pending") >= 1
    )
    assert (
        value(samples, "ringwatch_hub_stages_overdue", kind="intrusion", stage="acknowledged") == 0
    )

    desk.clock.advance(61)  # past the 1-minute acknowledgement
    later = scrape(desk)
    assert value(later, "ringwatch_hub_stages_overdue", kind="intrusion", stage="acknowledged") == 1
    assert value(later, "ringwatch_hub_stages_overdue", kind="watchlist", stage="acknowledged") == 1


def test_names_follow_the_prometheus_conventions(desk: Desk) -> None:  # noqa: F811
    _pid, vector = desk.person("Named Person", "red")
    ingest = Ingestor(
        desk.hub.sessions, desk.hub.matcher, desk.clock, desk.hub.stats, desk.hub._stored
    )
    ingest.ingest(
        [Inbound(event_topic("campus-n", "box-1", EventKind.FACE), encode(face(vector, 0)))]
    )
    text = desk.client.get("/metrics").text
    families = list(text_string_to_metric_families(text))
    assert families
    for family in families:
        assert family.name.startswith("ringwatch_hub_"), family.name
        assert not re.search(r"_(ms|milliseconds|minutes|kb|bytes_kb)\b", family.name)
        if family.type == "counter":
            assert all(s.name.endswith(("_total", "_created")) for s in family.samples)
        for sample in family.samples:
            assert "worker" in sample.labels
            assert not set(sample.labels) & {"person", "person_id", "user", "event_id", "name"}
    assert "Named Person" not in text and str(_pid) not in re.findall(r'"(\d+)"', text)


def test_the_grafana_dashboard_queries_only_metrics_the_hub_serves() -> None:
    board = json.loads((REPO / "configs/grafana-hub.json").read_text())
    exprs = [t["expr"] for p in board["panels"] for t in p.get("targets", [])]
    assert len(exprs) >= 7
    served = {
        "ringwatch_hub_events_received_total", "ringwatch_hub_events_stored_total",
        "ringwatch_hub_events_duplicate_total", "ringwatch_hub_dead_letters_total",
        "ringwatch_hub_ingest_lag_seconds_bucket", "ringwatch_hub_match_duration_seconds_bucket",
        "ringwatch_hub_incidents_active", "ringwatch_hub_stages_overdue",
        "ringwatch_hub_deliveries", "ringwatch_hub_ingest_errors_total",
        "ringwatch_hub_match_duration_seconds_count", "ringwatch_hub_match_duration_seconds_sum",
    }  # fmt: skip
    for expr in exprs:
        names = set(re.findall(r"\bringwatch_hub_[a-z_]+", expr))
        assert names and names <= served, expr
    assert {n for e in exprs for n in re.findall(r"\bringwatch_hub_[a-z_]+", e)} >= {
        "ringwatch_hub_events_stored_total", "ringwatch_hub_dead_letters_total",
        "ringwatch_hub_ingest_lag_seconds_bucket", "ringwatch_hub_match_duration_seconds_bucket",
        "ringwatch_hub_incidents_active", "ringwatch_hub_stages_overdue",
        "ringwatch_hub_deliveries",
    }  # fmt: skip


@pytest.mark.parametrize("path", ["/metrics"])
def test_metrics_are_not_in_the_api_schema(desk: Desk, path: str) -> None:  # noqa: F811
    schema = desk.client.get("/api/v1/openapi.json").json()
    assert path not in schema["paths"]
