"""Sending queued deliveries: MQTT alert topics and webhooks, with retries and backoff.

:class:`Dispatcher.dispatch` takes the pending deliveries whose time has come (``next_at <=
now``), sends each once, and records the attempt (:class:`DeliveryAttempt`): a webhook
answering 2xx is *sent* and never sent again; anything else waits ``retry.wait_after(n)``
seconds (exponential, capped) and is given up after ``retry.attempts``. Each webhook POST
carries the alert id in ``Idempotency-Key`` so a receiver can drop a repeat. Time is passed
in, so the retry schedule is tested without sleeping. On PostgreSQL the rows are claimed
with ``FOR UPDATE SKIP LOCKED``, so several hub workers never send one delivery twice.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub.db import SessionFactory
from ringwatch.hub.incident_config import RetryPolicy
from ringwatch.hub.incident_tables import Delivery, DeliveryAttempt
from ringwatch.hub.routing import Channel, DeliveryStatus

log = logging.getLogger(__name__)
MAX_PER_ROUND = 100


# Why a delivery failed, in words an officer's console can translate (``delivery_error.*``
# in the catalogues); the raw ``error`` stays beside it for the technician.
ERROR_KINDS = (
    "refused",  # the receiver answered 4xx
    "server_error",  # the receiver answered 5xx
    "unreachable",  # no connection (refused, reset, no route, name not found)
    "timeout",  # no answer in time
    "bad_address",  # the configured URL cannot be used
    "broker_away",  # the MQTT broker did not take the publish
    "mail_refused",  # the mail server answered with an error code
    "other",
)


@dataclass(frozen=True, slots=True)
class HttpResult:
    status: int | None
    error: str | None = None
    kind: str | None = None  # one of ERROR_KINDS when the attempt failed

    def __post_init__(self) -> None:
        if self.kind is not None and self.kind not in ERROR_KINDS:
            raise ValueError(f"HttpResult.kind {self.kind!r}: not one of {ERROR_KINDS}")

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


class WebhookTransport(Protocol):
    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> HttpResult:
        """POST ``body``; never raises (errors come back in the result)."""
        ...


class UrllibTransport:
    """The real transport (standard library; no extra dependency)."""

    def post(self, url: str, body: bytes, headers: dict[str, str], timeout_s: float) -> HttpResult:
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                return HttpResult(int(response.status))
        except urllib.error.HTTPError as exc:
            kind = "server_error" if exc.code >= 500 else "refused"
            return HttpResult(exc.code, f"HTTP {exc.code} {exc.reason}", kind)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            return HttpResult(None, f"{type(exc).__name__}: {exc}"[:500], connection_kind(exc))


def connection_kind(exc: BaseException) -> str:
    """``timeout``, ``bad_address`` or ``unreachable`` for an exception raised on the way to a
    receiver (urllib wraps the socket's error in ``URLError.reason``)."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, TimeoutError) or "timed out" in str(reason):
        return "timeout"
    if isinstance(reason, ValueError):
        return "bad_address"
    return "unreachable"


Publish = Callable[[str, bytes], bool]


class Sender(Protocol):
    """Another channel's sender (issue 14: e-mail, SMS/IM gateway; hub/notify.py)."""

    def send(self, delivery: Delivery, timeout_s: float) -> HttpResult: ...


class Dispatcher:
    """Sends due deliveries; see the module docstring."""

    def __init__(
        self,
        sessions: SessionFactory,
        retry: RetryPolicy,
        transport: WebhookTransport | None = None,
        publish: Publish | None = None,
        tokens: dict[str, str] | None = None,
        senders: dict[str, Sender] | None = None,
    ) -> None:
        self.sessions = sessions
        self.retry = retry
        self.transport = transport or UrllibTransport()
        self.publish = publish
        self.tokens = tokens or {}
        self.senders = senders or {}  # channel -> sender, retried like webhooks
        #: Seconds since the round began move each claim's lease on (tests inject it).
        self.monotonic: Callable[[], float] = time.monotonic

    def dispatch(self, now: dt.datetime) -> int:
        """Send what is due at ``now``; returns how many deliveries were attempted.

        Claim, send, record, one delivery at a time: the row is claimed in its own short
        transaction (attempt counted, ``next_at`` moved the claim lease on from the moment
        of the claim, so no other worker takes it meanwhile), sent, and its outcome
        committed in another short transaction right after. Claiming a whole round at once
        let the lease of the last rows of a long round run out while the first were still
        being sent, so another worker sent them too. A worker that dies holding a claim
        delays that one delivery by the lease (another worker then sends it); only one that
        dies between a send and its commit can make a repeat, and the repeat carries the
        same ``alert_id`` (body and ``Idempotency-Key``), so the recipient drops it. Holding
        the rows locked while sending instead made every delivery of a round go out again
        after such a death."""
        attempted, start = 0, self.monotonic()
        while attempted < MAX_PER_ROUND:
            with self.sessions.begin() as session:
                due = self._due(session, now, limit=1)
                if not due:
                    break
                claimed = due[0]
                claimed.attempts += 1
                spent = self.monotonic() - start  # the lease runs from the claim, not the round
                claimed.next_at = now + dt.timedelta(seconds=spent + self._claim_s())
            attempted += 1
            result = self._attempt(claimed)
            with self.sessions.begin() as session:
                row = session.get(Delivery, claimed.id, with_for_update=True)
                if row is not None and row.status == DeliveryStatus.PENDING:
                    self._send(session, row, result, now)
        return attempted

    def _claim_s(self) -> float:
        return max(10.0, 2 * self.retry.timeout_s)

    def _due(self, session: Session, now: dt.datetime, limit: int) -> list[Delivery]:
        channels = [Channel.WEBHOOK.value, *self.senders]
        if self.publish is not None:
            channels.append(Channel.MQTT.value)
        query = (
            sa.select(Delivery)
            .where(
                Delivery.status == DeliveryStatus.PENDING.value,
                Delivery.channel.in_(channels),
                Delivery.next_at <= now,
            )
            .order_by(Delivery.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return list(session.scalars(query))

    def _send(
        self, session: Session, delivery: Delivery, result: HttpResult, now: dt.datetime
    ) -> None:
        """Record the outcome of the attempt just made (counted when it was claimed)."""
        session.add(
            DeliveryAttempt(
                delivery_id=delivery.id,
                at=now,
                ok=result.ok,
                status_code=result.status,
                error=None if result.error is None else result.error[:500],
            )
        )
        if result.ok:
            delivery.status, delivery.sent_at, delivery.next_at = DeliveryStatus.SENT, now, None
            delivery.last_error = delivery.last_error_kind = None
            return
        delivery.last_error, delivery.last_error_kind = result.error, result.kind or "other"
        if delivery.attempts >= self._attempts(delivery):
            delivery.status, delivery.next_at = DeliveryStatus.GIVEN_UP, None
            log.warning("gave up delivery %s to %s: %s", delivery.id, delivery.target, result.error)
        else:
            delivery.next_at = now + dt.timedelta(seconds=self.retry.wait_after(delivery.attempts))

    def _attempts(self, delivery: Delivery) -> int:
        # MQTT publishes only fail while the broker is away: keep them until it is back.
        return self.retry.attempts if delivery.channel == Channel.WEBHOOK else 10_000

    def _attempt(self, delivery: Delivery) -> HttpResult:
        if delivery.channel in self.senders:
            return self.senders[delivery.channel].send(delivery, self.retry.timeout_s)
        body = json.dumps(delivery.payload).encode()
        if delivery.channel == Channel.MQTT:
            assert self.publish is not None
            ok = self.publish(delivery.target, body)
            if ok:
                return HttpResult(200)
            return HttpResult(None, "broker did not take it", "broker_away")
        headers = self._headers(delivery)
        return self.transport.post(delivery.target, body, headers, self.retry.timeout_s)

    def _headers(self, delivery: Delivery) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "Idempotency-Key": delivery.alert_id,
            "User-Agent": "ringwatch-hub",
        }
        token = self.tokens.get(delivery.target)
        if token is not None:
            headers["X-Ringwatch-Token"] = token
        return headers


def delivery_summary(row: Delivery) -> dict[str, Any]:
    return {
        "id": row.id,
        "alert_id": row.alert_id,
        "reason": row.reason,
        "channel": row.channel,
        "recipient_kind": row.recipient_kind,
        "recipient": row.recipient,
        "target": row.target,
        "status": row.status,
        "attempts": row.attempts,
        "last_error": row.last_error,
        "error_kind": row.last_error_kind,
        "created_at": row.created_at.isoformat(),
        "sent_at": None if row.sent_at is None else row.sent_at.isoformat(),
    }
