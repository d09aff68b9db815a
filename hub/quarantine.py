"""Flood quarantine: a broker login that sends malformed messages far faster than any box
does is shut out for a while, so that it stops costing the hub (issue 11).

Every malformed message costs the hub its receive, parse and dead-letter row (about 0.5 ms
of CPU); one login flooding at 1,000 messages/s takes half of a hub process's valid-event
rate (docs/security.md). Those messages reach the hub through its one MQTT connection,
so the hub cannot refuse them itself; the broker can.

:class:`FloodWatch` counts the malformed messages of each login (:func:`login_of`: the
shipped ACL pins a device's login to its own device segment of the topics, and a sensor
gateway's to its site) in fixed windows. A login that reaches ``bad_per_window`` within
``window_s`` is quarantined: a ``device_quarantines`` row (0006_i11), an audit entry, a
``device_quarantined`` technical incident for the site's technicians
(hub/incidents/technical.py) and, with ``ingest.flood.at_broker``, a ban at the broker by
:class:`DynsecGuard` (Mosquitto's dynamic-security plugin: a client of that user name is
created or disabled, which disconnects the login and refuses it until the client is
deleted or enabled again). The quarantine lasts ``quarantine_s``, doubled for each earlier
one of the same login within a day (at most a day); the guard thread lifts it when due,
an admin or a technician of the site can lift it sooner (``POST /quarantines/{id}/lift``).
The row is written before the ban (no ban without a row to lift it), lifting asks the
broker wherever a ban command was sent, and the guard removes ban clients no active row
stands for every :data:`RECONCILE_S`.

Nothing valid is lost by a ban: a box keeps its events in its outbox until the hub's
receipt, and its MQTT client keeps retrying a refused login (``retry_refused_s``,
core/mqtt.py), so once the quarantine is lifted the outbox drains as after any outage.
What a ban costs is delay: a box quarantined for flooding also holds back its real alerts
until it is lifted, which is why the default threshold (500 in 10 s) is some 50 times what
a box sends at most, and why the technicians are told at once.

The hub never quarantines its own logins (ingest, zones, guard). With several hub workers
each counts its own share of the messages (the shared subscription splits them), so a
login is quarantined once its flood exceeds the threshold at one worker; one active row per
login (advisory lock on PostgreSQL; one worker on SQLite).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.topics import PREFIX, PREFIX_PARTS, is_segment
from ringwatch.errors import RingwatchError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.clock import Clock
from ringwatch.hub.db import SessionFactory
from ringwatch.hub.inventory import FloodConfig
from ringwatch.hub.workers import lock_keys
from ringwatch.mqtt import BrokerLogin, Message, MqttClient, MqttError

log = logging.getLogger(__name__)
GUARD = crud.Actor("hub-flood-guard", "system")
CONTROL_TOPIC = "$CONTROL/dynamic-security/v1"
RESPONSE_TOPIC = CONTROL_TOPIC + "/response"
GUARD_USER_SUFFIX = "-guard"
BAN_NAME = "ringwatch flood ban"  # the text name of a broker client a ban created
MAX_QUARANTINE = dt.timedelta(days=1)
RECONCILE_S = 60.0  # how often the broker's ban clients are checked against the rows
# Topic kind -> index (after the prefix) of the segment that names the publishing login
# under the shipped ACL: devices publish under their own device segment, sensor gateways
# under their site.
_LOGIN_SEGMENT = {"events": 2, "health": 2, "status": 2, "replies": 2, "sensors": 1}


class GuardError(RingwatchError):
    """The broker's dynamic-security plugin did not do what the guard asked. ``sent``:
    a command may have reached the broker (a timeout), so it may have been done."""

    def __init__(self, message: str, sent: bool = True) -> None:
        super().__init__(message)
        self.sent = sent


@dataclass(frozen=True, slots=True)
class Source:
    """Who published a message, as far as its topic tells: site, device and broker login."""

    site: str
    device: str
    login: str


def login_of(topic: str) -> Source | None:
    """The source a topic names (None where it names none we could ban)."""
    parts = topic.split("/")
    if len(parts) < PREFIX_PARTS + 3 or "/".join(parts[:PREFIX_PARTS]) != PREFIX:
        return None
    kind = parts[PREFIX_PARTS]
    index = _LOGIN_SEGMENT.get(kind)
    if index is None:
        return None
    site, second = parts[PREFIX_PARTS + 1], parts[PREFIX_PARTS + 2]
    login = parts[PREFIX_PARTS + index]
    if not (is_segment(site) and is_segment(second)):
        return None
    return Source(site, second if kind != "sensors" else site, login)


class DynsecGuard:
    """Bans and readmits broker logins through Mosquitto's dynamic-security plugin, over
    its own MQTT connection (the guard login must hold the plugin's admin role)."""

    def __init__(self, url: str, login: BrokerLogin, timeout_s: float = 5.0) -> None:
        if login.username is None:
            raise GuardError("the flood guard needs a broker login (broker_username)")
        self.username = login.username
        self.timeout_s = timeout_s
        self._waiting: dict[str, _Call] = {}
        self._lock = threading.Lock()
        self.client = MqttClient(
            url,
            login.username,
            username=login.username,
            password=login.password,
            ca_file=login.ca_file,
            session_expiry_s=0,
        )
        self.client.subscribe(RESPONSE_TOPIC, self._on_response)

    def start(self) -> None:
        self.client.start()

    def close(self) -> None:
        self.client.close()

    def ban(self, login: str) -> str:
        """Refuse ``login`` at the broker (and disconnect it now). Returns what was done:
        ``created`` (a disabled client named :data:`BAN_NAME`), ``disabled`` (the
        operator's own client of that name, enabled until now) or ``was_disabled`` (the
        operator's own, disabled already: left as it is)."""
        found = self._client(login)
        if found is not None and found.get("textname") != BAN_NAME:
            if found.get("disabled"):
                return "was_disabled"
            self._check(self._run([{"command": "disableClient", "username": login}]))
            return "disabled"
        _, disable = self._run(
            [
                {"command": "createClient", "username": login, "textName": BAN_NAME},
                {"command": "disableClient", "username": login},
            ]
        )
        self._check([disable])  # created now, or another worker's ban made it: ours
        return "created"

    def readmit(self, login: str, how: str | None) -> None:
        """Undo a ban: delete a client named :data:`BAN_NAME` (whichever worker's ban made
        it), enable the operator's own client only if the ban disabled it (``how`` is
        ``disabled``), else leave it. A client already gone counts as done."""
        found = self._client(login)
        if found is None:
            return
        if found.get("textname") == BAN_NAME:
            self._check(self._run([{"command": "deleteClient", "username": login}]))
        elif how == "disabled":
            self._check(self._run([{"command": "enableClient", "username": login}]))

    def ban_clients(self) -> list[str]:
        """The logins the broker holds a ban client for (text name :data:`BAN_NAME`)."""
        (reply,) = self._run([{"command": "listClients", "verbose": True, "count": -1}])
        self._check([reply])
        clients = (reply.get("data") or {}).get("clients") or []
        return [
            str(c.get("username"))
            for c in clients
            if isinstance(c, dict) and _text_name(c) == BAN_NAME
        ]

    def _client(self, login: str) -> dict[str, Any] | None:
        (reply,) = self._run([{"command": "getClient", "username": login}])
        error = str(reply.get("error") or "")
        if "not found" in error.lower():
            return None
        self._check([reply])
        client = (reply.get("data") or {}).get("client") or {}
        return {**client, "textname": _text_name(client)}

    @staticmethod
    def _check(replies: list[dict[str, Any]]) -> None:
        for reply in replies:
            if reply.get("error"):
                raise GuardError(f"{reply.get('command')}: {reply['error']}")

    def _run(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        try:
            return self._exchange(commands)
        except MqttError as exc:  # refused login, lost connection: nothing was sent
            raise GuardError(f"the guard login {self.username!r}: {exc}", sent=False) from None

    def _exchange(self, commands: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not self.client.wait_subscribed(self.timeout_s):
            raise GuardError(f"no connection to the broker as {self.username!r}", sent=False)
        call = _Call({uuid.uuid4().hex for _ in commands})
        tags = sorted(call.want)
        with self._lock:
            for tag in tags:
                self._waiting[tag] = call
        try:
            for command, tag in zip(commands, tags, strict=True):
                command["correlationData"] = tag
            body = json.dumps({"commands": commands}).encode()
            if not self.client.publish_wait(CONTROL_TOPIC, body, timeout=self.timeout_s):
                raise GuardError(f"the broker refused the guard's command ({self.username!r})")
            if not call.done.wait(self.timeout_s):
                raise GuardError(
                    f"no answer from the broker's dynamic-security plugin in {self.timeout_s:g}"
                    f" s (is it loaded, and is {self.username!r} its admin?)"
                )
        finally:
            with self._lock:
                for tag in tags:
                    self._waiting.pop(tag, None)
        return [call.replies.get(tag, {}) for tag in tags]

    def _on_response(self, message: Message) -> None:
        try:
            body = json.loads(message.payload)
        except ValueError:
            log.warning("unreadable dynamic-security response on %s", message.topic)
            return
        responses = body.get("responses", []) if isinstance(body, dict) else []
        with self._lock:
            for response in responses:
                tag = response.get("correlationData") if isinstance(response, dict) else None
                call = self._waiting.get(str(tag))
                if call is None:
                    continue  # another worker's guard, or an answer that came too late
                call.replies[str(tag)] = response
                call.want.discard(str(tag))
                if not call.want:
                    call.done.set()


def _text_name(client: dict[str, Any]) -> Any:
    """Mosquitto 2.0.11 answers ``textname`` for what ``createClient`` calls ``textName``."""
    return client.get("textname", client.get("textName"))


@dataclass
class _Call:
    """One guard request: the correlation tags still unanswered, and the answers."""

    want: set[str]
    replies: dict[str, dict[str, Any]] = field(default_factory=dict)
    done: threading.Event = field(default_factory=threading.Event)


@dataclass(frozen=True, slots=True)
class Flood:
    source: Source
    count: int
    reasons: str


class FloodWatch:
    """Counts malformed messages per login and quarantines a flooding one; see the module
    docstring. :meth:`note` runs on the broker link's thread and only counts; bans and
    lifts happen on the guard thread."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        config: FloodConfig,
        guard: DynsecGuard | None = None,
        protected: Iterable[str] = (),
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sessions = sessions
        self.clock = clock
        self.config = config
        self.guard = guard
        self.protected = frozenset(protected)
        self._monotonic = monotonic
        # A sliding window, approximated by two fixed ones: the previous window's total,
        # weighted by how much of it still overlaps the last window_s, plus this one's.
        self._index = int(self._monotonic() // config.window_s)
        self._counts: dict[str, Counter[str]] = {}  # this window, by reason
        self._previous: dict[str, int] = {}  # the window before, totals
        self._flagged: dict[str, float] = {}  # login -> until when it is not flagged again
        self._lock = threading.Lock()
        self._floods: queue.Queue[Flood] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lift_failed: dict[int, float] = {}  # quarantine id -> when that was last said
        self.quarantined = 0
        self.errors = 0

    # -- counting (broker link thread) ------------------------------------------------------

    def note(self, topic: str, reason: str) -> None:
        """Count one malformed message on ``topic``."""
        source = login_of(topic)
        if source is None or source.login in self.protected:
            return
        window = self.config.window_s
        now = self._monotonic()
        with self._lock:
            index = int(now // window)
            if index != self._index:
                previous = self._counts if index == self._index + 1 else {}
                self._previous = {login: c.total() for login, c in previous.items()}
                self._index, self._counts = index, {}
                self._flagged = {k: v for k, v in self._flagged.items() if v > now}
            counts = self._counts.setdefault(source.login, Counter())
            counts[reason] += 1
            overlap = 1.0 - (now / window - index)
            total = counts.total() + int(self._previous.get(source.login, 0) * overlap)
            if total < self.config.bad_per_window:
                return
            if self._flagged.get(source.login, 0.0) > now:
                return  # handed to the guard thread already
            self._flagged[source.login] = now + window
        top = ", ".join(f"{r} {n}" for r, n in counts.most_common(5))
        self._floods.put(Flood(source, total, top))

    def forget(self, login: str) -> None:
        """Start counting ``login`` afresh (its quarantine was lifted)."""
        with self._lock:
            self._counts.pop(login, None)
            self._previous.pop(login, None)
            self._flagged.pop(login, None)

    # -- the guard thread -------------------------------------------------------------------

    def start(self) -> None:
        if self.guard is not None:
            self.guard.start()
        self._thread = threading.Thread(target=self._run, name="hub-flood-guard", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)
        if self.guard is not None:
            self.guard.close()

    def _run(self) -> None:
        reconciled = -RECONCILE_S  # at start, then every RECONCILE_S
        while not self._stop.is_set():
            try:
                try:
                    flood = self._floods.get(timeout=1.0)
                except queue.Empty:
                    flood = None
                if flood is not None:
                    self.quarantine(flood)
                self.lift_due()
                if self.guard is not None and self._monotonic() - reconciled >= RECONCILE_S:
                    reconciled = self._monotonic()
                    self.reconcile()
            except Exception:  # the guard thread must never die
                self.errors += 1
                log.exception("flood guard round failed; going on")
                self._stop.wait(1.0)

    def quarantine(self, flood: Flood) -> t.DeviceQuarantine | None:
        """Record (and, with a guard, ban) a flooding login; None if it is already in. The
        row comes first: no ban is ever made that no row would lift."""
        src = flood.source
        now = self.clock()
        with self.sessions.begin() as session:
            lock_keys(session, [f"quarantine:{src.login}"])
            if self._active(session, src.login) is not None:
                return None  # another worker was first
            earlier = session.scalar(
                sa.select(sa.func.count())
                .select_from(t.DeviceQuarantine)
                .where(t.DeviceQuarantine.login == src.login)
                .where(t.DeviceQuarantine.started_at > now - dt.timedelta(days=1))
            )
            seconds = self.config.quarantine_s * 2 ** min(int(earlier or 0), 16)
            until = now + min(dt.timedelta(seconds=seconds), MAX_QUARANTINE)
            site, device = _where(session, src)
            row = t.DeviceQuarantine(
                login=src.login,
                site_id=site,
                device_id=device,
                started_at=now,
                until=until,
                bad_count=flood.count,
                window_s=self.config.window_s,
                reasons=flood.reasons[:500],
                broker_ban=False,
                broker_client=None,
                broker_error=None,
            )
            session.add(row)
            session.flush()
            detail = f"{flood.count} malformed messages in {self.config.window_s} s"
            crud.audit(
                session,
                GUARD,
                "quarantine",
                "device",
                f"{site}/{device}",
                now,
                detail,
                login=src.login,
                until=until.isoformat(),
                reasons=flood.reasons,
                at_broker=self.guard is not None,
            )
            session.expunge(row)
        self.quarantined += 1
        if self.guard is not None:  # outside the transaction: no lock over a round trip
            how: str | None
            error: str | None
            try:
                how, error = self.guard.ban(src.login), None
            except GuardError as exc:  # a timeout may still have banned: lift readmits
                how, error = ("unknown" if exc.sent else None), str(exc)[:500]
                self.errors += 1
                log.error("flood from %s: the broker ban failed: %s", src.login, exc)
            with self.sessions.begin() as session:
                session.execute(
                    sa.update(t.DeviceQuarantine)
                    .where(t.DeviceQuarantine.id == row.id)
                    .values(broker_ban=error is None, broker_client=how, broker_error=error)
                )
            row.broker_ban, row.broker_client, row.broker_error = error is None, how, error
        log.error(
            "quarantined login %s (%s/%s) until %s: %s (%s)%s",
            src.login,
            site,
            device,
            until.isoformat(),
            detail,
            flood.reasons,
            "" if row.broker_ban else " -- not banned at the broker",
        )
        return row

    def lift_due(self) -> int:
        """Lift every quarantine whose time is up; how many were lifted."""
        now = self.clock()
        with self.sessions() as session:
            due = list(
                session.scalars(
                    sa.select(t.DeviceQuarantine.id)
                    .where(t.DeviceQuarantine.lifted_at.is_(None))
                    .where(t.DeviceQuarantine.until <= now)
                )
            )
        lifted = 0
        for qid in due:
            try:
                lifted += self.lift(qid, GUARD, "time up") is not None
            except GuardError as exc:  # left active: tried again next round
                self.errors += 1
                last = self._lift_failed.get(qid)
                if last is None or self._monotonic() - last >= 60:
                    self._lift_failed[qid] = self._monotonic()
                    log.error("quarantine %d is due but cannot be lifted: %s", qid, exc)
        return lifted

    def lift(self, quarantine_id: int, actor: crud.Actor, why: str) -> t.DeviceQuarantine | None:
        """Readmit the login at the broker, then mark the row lifted (None if it was not
        active). Raises :class:`GuardError` (row left active) if the broker did not do it.
        The broker is asked wherever a ban command was sent, also one that timed out (it
        may have been done); readmitting is idempotent."""
        with self.sessions() as session:
            row = session.get(t.DeviceQuarantine, quarantine_id)
            if row is None or row.lifted_at is not None:
                return None
            login, banned, how = row.login, row.broker_ban, row.broker_client
        if self.guard is not None and (banned or how is not None):
            self.guard.readmit(login, how)
        elif banned:
            raise GuardError(
                f"quarantine {quarantine_id}: {login} is banned at the broker and this hub"
                " has no guard login (ingest.flood.at_broker) to readmit it"
            )
        now = self.clock()
        with self.sessions.begin() as session:
            lock_keys(session, [f"quarantine:{login}"])
            done = session.execute(
                sa.update(t.DeviceQuarantine)
                .where(t.DeviceQuarantine.id == quarantine_id)
                .where(t.DeviceQuarantine.lifted_at.is_(None))
                .values(lifted_at=now, lifted_by=actor.name)
            )
            if done.rowcount != 1:  # type: ignore[attr-defined]
                return None  # lifted meanwhile (the timer, another worker, an admin)
            lifted = session.get(t.DeviceQuarantine, quarantine_id)
            assert lifted is not None
            crud.audit(
                session,
                actor,
                "lift_quarantine",
                "device",
                f"{lifted.site_id}/{lifted.device_id}",
                now,
                why,
                login=login,
            )
            session.flush()
            session.expunge(lifted)
        self._lift_failed.pop(quarantine_id, None)
        self.forget(login)
        log.warning("quarantine of %s lifted by %s: %s", login, actor.name, why)
        return lifted

    def reconcile(self) -> int:
        """Delete the broker's ban clients that no active quarantine stands for (a hub that
        stopped between a lift's two steps); how many. Needs the guard."""
        if self.guard is None:
            return 0
        banned = self.guard.ban_clients()
        with self.sessions() as session:
            active = set(
                session.scalars(
                    sa.select(t.DeviceQuarantine.login).where(
                        t.DeviceQuarantine.lifted_at.is_(None)
                    )
                )
            )
        stale = [login for login in banned if login not in active]
        for login in stale:
            log.warning("the broker still banned %s with no quarantine: readmitting", login)
            self.guard.readmit(login, None)
        return len(stale)

    @staticmethod
    def _active(session: Session, login: str) -> t.DeviceQuarantine | None:
        return session.scalar(
            sa.select(t.DeviceQuarantine)
            .where(t.DeviceQuarantine.login == login)
            .where(t.DeviceQuarantine.lifted_at.is_(None))
        )


def _where(session: Session, src: Source) -> tuple[str, str]:
    """The site and device a login is in the inventory (a device's login is its id; a
    sensor gateway's its site), so the right site's technicians see it; where the inventory
    does not know it, what the topic said."""
    if src.login == src.site and session.get(t.Site, src.site) is not None:
        return src.site, src.site
    known = session.execute(
        sa.select(t.Device.site_id, t.Device.id).where(t.Device.id == src.login).limit(2)
    ).all()
    if len(known) == 1:
        return known[0][0], known[0][1]
    return src.site, src.device


__all__ = [
    "DynsecGuard",
    "Flood",
    "FloodWatch",
    "GuardError",
    "Source",
    "login_of",
]
