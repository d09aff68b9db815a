"""The incident service at run time: the ingest hook, the timer loop and the dispatcher.

- :meth:`IncidentRuntime.on_stored` is called by ingest inside its transaction with the new
  events; it updates incidents in that transaction (a failure rolls the batch back, so an
  event is never stored and receipted without its incident step) and wakes the loop once
  it commits.
- :meth:`IncidentRuntime.tick` is one round of the loop at an injected ``now``: escalate
  missed stages, raise technical incidents, send due deliveries, and once an hour purge
  what is past retention. Tests call it directly with a fake time; the hub runs it in a
  thread every ``tick_s`` seconds (and at once after new incidents).

Several workers: stages and deliveries are claimed row by row (``SKIP LOCKED``); the
technical watch (which remembers heartbeats between rounds) runs on the one worker holding
the ``technical`` lease (renewed each round; taken over ``TECHNICAL_LEASE`` after its holder
stops renewing it); each hourly purge is claimed once (:func:`~ringwatch.hub.workers.claim_round`,
in the purge's own transaction, so a worker dying mid-purge leaves the round to another).
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import ColourPolicy
from ringwatch.contract.messages import Event
from ringwatch.hub.clock import Clock
from ringwatch.hub.db import SessionFactory
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.incidents import IncidentService
from ringwatch.hub.retention import Purged, purge
from ringwatch.hub.routing import Router
from ringwatch.hub.webhooks import Dispatcher, Publish, Sender, WebhookTransport
from ringwatch.hub.workers import claim_lease, claim_round

log = logging.getLogger(__name__)
RETENTION_EVERY = dt.timedelta(hours=1)
TECHNICAL_LEASE = dt.timedelta(seconds=10)


@dataclass(frozen=True, slots=True)
class TickResult:
    escalated: int
    technical: int
    dispatched: int
    purged: Purged | None


class IncidentRuntime:
    """See the module docstring."""

    def __init__(
        self,
        sessions: SessionFactory,
        config: IncidentsConfig,
        policy: ColourPolicy,
        clock: Clock,
        publish: Publish | None = None,
        transport: WebhookTransport | None = None,
        senders: dict[str, Sender] | None = None,
        worker: str = "hub-1",
    ) -> None:
        self.sessions = sessions
        self.config = config
        self.clock = clock
        self.service = IncidentService(config, policy, Router(config))
        tokens = {str(h.url): h.secret_header for h in config.webhooks if h.secret_header}
        self.dispatcher = Dispatcher(sessions, config.retry, transport, publish, tokens, senders)
        self.errors = 0
        self.worker = worker
        self.technical_leader = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def on_stored(
        self, events: Sequence[Event], now: dt.datetime, session: Session | None = None
    ) -> None:
        """Ingest hook: new events -> incidents. With ``session`` (the ingest transaction)
        errors propagate, so the batch rolls back and ingest retries it; the loop is woken
        once that transaction commits. Without it, in its own transaction."""
        if session is not None:
            self.service.on_stored(session, events, now)
            sa.event.listen(session, "after_commit", self._woken, once=True)
            return
        try:
            with self.sessions.begin() as session:
                self.service.on_stored(session, events, now)
        except Exception:
            self.errors += 1
            log.exception("incident update failed for %d events", len(events))
        self._wake.set()

    def _woken(self, session: Session) -> None:
        self._wake.set()

    def tick(self, now: dt.datetime) -> TickResult:
        with self.sessions.begin() as session:
            escalated = len(self.service.escalate_missed(session, now))
        technical = self._technical(now)
        dispatched = self.dispatcher.dispatch(now)
        purged = None
        with self.sessions.begin() as session:
            if claim_round(session, "retention", RETENTION_EVERY, now):
                purged = purge(session, self.config.retention, now)
        return TickResult(escalated, technical, dispatched, purged)

    def _technical(self, now: dt.datetime) -> int:
        """One round of the technical watch, on the lease holder only."""
        with self.sessions.begin() as session:
            leader = claim_lease(session, "technical", self.worker, now, TECHNICAL_LEASE)
            if not leader:
                if self.technical_leader:  # lost it: what we remembered is stale now
                    log.info("worker %s: technical watch taken over by another", self.worker)
                    self.service.technical = self.service.technical.fresh()
                self.technical_leader = False
                return 0
            self.technical_leader = True
            # A closed shed still burning is raised again by the lease holder only (issue 13).
            self.service.shed_watch.check(session, self.service, now)
            return len(self.service.watch_devices(session, now))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-incidents", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.tick(self.clock())
            except Exception:
                self.errors += 1
                log.exception("incident timer round failed; trying again next round")
            self._wake.wait(self.config.tick_s)
            self._wake.clear()
