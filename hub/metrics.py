"""Prometheus metrics at the hub's ``/metrics`` (prometheus-client).

One prefix, ``ringwatch_hub_``; base units (seconds); counters end in ``_total``; every
series carries the ingest ``worker`` it comes from; no person, user or event ids as labels
(kinds, colours, stages, channels and statuses only: a handful of values each).

- Counters since start, from the ingest: events received / stored / duplicates / sightings
  / receipts / errors, dead letters by reason (the ingest rate is ``rate()`` of these).
- Histograms: ingest lag (hub time of storing minus the event's capture time) and 1:N
  match time per batch, with the number of face queries.
- Gauges read from the database at scrape time: active incidents by kind and colour,
  overdue stages by kind and stage, deliveries by channel and status.

A registry per hub (no global state), so tests and several apps in one process do not mix.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from ringwatch.contract.messages import Event
from ringwatch.hub.ann import Match
from ringwatch.hub.incident_tables import Delivery, Incident, IncidentStage
from ringwatch.hub.matching import Matcher

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sqlalchemy.orm import Session

    from ringwatch.hub.ingest import IngestStats

PREFIX = "ringwatch_hub"
ACTIVE = ("open", "confirmed")  # incidents.Status.ACTIVE, without importing the service
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300)
MATCH_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1)
INGEST_COUNTERS = {  # IngestStats field -> metric name (without _total) and help
    "received": ("events_received", "Event messages taken from the broker."),
    "stored": ("events_stored", "Events stored (new event ids)."),
    "duplicates": ("events_duplicate", "Events discarded as already stored."),
    "sightings": ("sightings", "Watch-list sightings made from face events."),
    "receipts_sent": ("receipts_sent", "Receipt messages sent to edges."),
    "errors": ("ingest_errors", "Ingest batches that failed and were retried."),
}


class HubMetrics:
    """The hub's registry: ingest counters, lag and match histograms, database gauges."""

    def __init__(
        self,
        stats: IngestStats,
        sessions: Callable[[], Session],
        clock: Callable[[], dt.datetime],
        worker: str,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.worker = worker
        self.lag = Histogram(
            f"{PREFIX}_ingest_lag_seconds",
            "Hub time of storing minus the event's capture time.",
            ["worker"],
            buckets=LAG_BUCKETS,
            registry=self.registry,
        ).labels(worker)
        self.match_seconds = Histogram(
            f"{PREFIX}_match_duration_seconds",
            "Time of one 1:N watch-list match call (all faces of an ingest batch).",
            ["worker"],
            buckets=MATCH_BUCKETS,
            registry=self.registry,
        ).labels(worker)
        self.registry.register(_StateCollector(stats, sessions, clock, worker))

    def stored(self, events: Sequence[Event], now: dt.datetime) -> None:
        """Called by the ingest hook with each batch of newly stored events."""
        for event in events:
            self.lag.observe(max((now - event.captured_at).total_seconds(), 0.0))

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(
        self,
        stats: IngestStats,
        sessions: Callable[[], Session],
        clock: Callable[[], dt.datetime],
        worker: str,
    ) -> None:
        self.stats, self.sessions, self.clock, self.worker = stats, sessions, clock, worker

    def describe(self) -> list[Metric]:
        return []  # families are made at collect time; nothing to pre-register

    def collect(self) -> Iterator[Metric]:
        yield from self._ingest()
        with self.sessions() as session:
            yield from _database(session, self.clock(), self.worker)

    def _ingest(self) -> Iterator[Metric]:
        counts = self.stats.snapshot()
        for field, (name, doc) in INGEST_COUNTERS.items():
            family = CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=["worker"])
            family.add_metric([self.worker], counts.get(field, 0))
            yield family
        dead = CounterMetricFamily(
            f"{PREFIX}_dead_letters",
            "Messages refused into dead letters.",
            labels=["worker", "reason"],
        )
        with self.stats._lock:
            by_reason = dict(self.stats.dead_by_reason)
        for reason, n in sorted(by_reason.items()):
            dead.add_metric([self.worker, reason], n)
        yield dead


def _database(session: Session, now: dt.datetime, worker: str) -> Iterator[Metric]:
    incidents = GaugeMetricFamily(
        f"{PREFIX}_incidents_active",
        "Open or confirmed incidents.",
        labels=["worker", "kind", "colour"],
    )
    rows = session.execute(
        sa.select(Incident.kind, Incident.colour, sa.func.count())
        .where(Incident.status.in_(ACTIVE))
        .group_by(Incident.kind, Incident.colour)
    )
    for kind, colour, n in rows:
        incidents.add_metric([worker, kind, colour or "none"], n)
    yield incidents
    overdue = GaugeMetricFamily(
        f"{PREFIX}_stages_overdue",
        "Response stages past their deadline and not done.",
        labels=["worker", "kind", "stage"],
    )
    rows = session.execute(
        sa.select(Incident.kind, IncidentStage.name, sa.func.count())
        .join(Incident, Incident.id == IncidentStage.incident_id)
        .where(
            IncidentStage.done_at.is_(None),
            IncidentStage.cancelled.is_(False),
            IncidentStage.due_at < now,
            Incident.status.in_(ACTIVE),
        )
        .group_by(Incident.kind, IncidentStage.name)
    )
    for kind, stage, n in rows:
        overdue.add_metric([worker, str(kind), str(stage)], n)
    yield overdue
    deliveries = GaugeMetricFamily(
        f"{PREFIX}_deliveries",
        "Alert deliveries by channel and current status (pending, sent, given_up).",
        labels=["worker", "channel", "status"],
    )
    rows = session.execute(
        sa.select(Delivery.channel, Delivery.status, sa.func.count()).group_by(
            Delivery.channel, Delivery.status
        )
    )
    for channel, status, n in rows:
        deliveries.add_metric([worker, str(channel), str(status)], n)
    yield deliveries


class TimedMatcher(Matcher):
    """The watch-list matcher, timing each 1:N call into ``observe`` (set by the hub)."""

    observe: Callable[[float], None] | None = None

    def match(self, session: Session, embeddings: Any) -> list[list[Match]]:
        started = time.perf_counter()
        try:
            return super().match(session, embeddings)
        finally:
            if self.observe is not None:
                self.observe(time.perf_counter() - started)


def include_metrics(app: FastAPI, metrics: HubMetrics) -> None:
    """``GET /metrics`` in Prometheus' text format (counts only: no ids, no personal data)."""
    from fastapi import Response

    async def scrape() -> Response:
        import anyio.to_thread

        body = await anyio.to_thread.run_sync(metrics.render)  # database reads: off the loop
        return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

    app.add_api_route("/metrics", scrape, methods=["GET"], include_in_schema=False)
