"""The hub's MQTT side: its role on top of the shared paho adapter (:mod:`ringwatch.mqtt`,
core/mqtt.py) in :class:`MqttLink`, and the ingest worker that batches messages, commits
them, then acks them and sends the devices their receipts.

The link: a stable client id per worker, a persistent session (``clean_start=False`` plus a
session expiry), ``manual_ack=True`` so the broker redelivers whatever was not committed, and
the shared subscriptions made again in every ``on_connect`` (a shared subscription restored
from Mosquitto's persistence file receives nothing after a broker restart) -- all of it, with
the checks of ``loop_start``, SUBACK and PUBACK refusals, in :class:`ringwatch.mqtt.MqttClient`.

Login: a production broker (configs/mosquitto.conf) refuses anonymous clients, so a link
takes a :class:`BrokerLogin` (user name, password read from a file, CA file for mqtts://).
A CONNACK refusing the credentials stops all retrying (the same credentials cannot start
working) and is kept in :attr:`MqttLink.refused` for the health endpoint.

Routed alerts go out through :meth:`MqttLink.publish_confirmed`: True only once the broker
PUBACKed, False leaves no copy in paho that would be sent after a reconnect, so the
dispatcher's retry is the only other copy (hub/webhooks.py).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from sqlalchemy.exc import InterfaceError, OperationalError

from ringwatch.contract.messages import MAX_RECEIPT_IDS, Receipt, encode
from ringwatch.contract.topics import TopicKind, receipt_topic, shared_filter, topic_filter
from ringwatch.hub.clock import Clock
from ringwatch.hub.ingest import BatchResult, Inbound, IngestStats, Rejected
from ringwatch.mqtt import (
    FATAL_CONNACK,
    BrokerAddress,
    BrokerLogin,
    ClientCounters,
    Message,
    MqttClient,
)

log = logging.getLogger(__name__)
INGEST_KINDS = (TopicKind.EVENTS, TopicKind.HEALTH, TopicKind.SENSORS)
# Connection-level database errors: the batch is retried as a whole. Any other error
# (DataError, IntegrityError, ProgrammingError, a bug) is one message's fault.
UNAVAILABLE = (OperationalError, InterfaceError)
#: How long a routed alert waits for its PUBACK (well under the dispatcher's claim time).
ALERT_CONFIRM_S = 5.0


class Link(Protocol):
    """What the worker needs of a broker link (:class:`MqttLink`, or the NATS consumer)."""

    def ack(self, mid: int, qos: int) -> None: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool: ...


class BatchIngest(Protocol):
    """What the worker needs of :class:`~ringwatch.hub.ingest.Ingestor`."""

    @property
    def stats(self) -> IngestStats: ...

    def ingest(self, batch: Sequence[Inbound]) -> BatchResult: ...

    def dead_letter(self, message: Inbound, reason: str, detail: str) -> BatchResult: ...


def ingest_subscriptions(group: str) -> list[str]:
    """Shared filters for events, health and sensor readings."""
    return [shared_filter(group, topic_filter(kind)) for kind in INGEST_KINDS]


class MqttLink:
    """The hub's broker link: the shared client in manual-ack mode, one callback for all of
    its subscriptions, and the refusal worded for the hub's settings."""

    def __init__(
        self,
        address: BrokerAddress,
        client_id: str,
        subscriptions: Sequence[str],
        on_message: Callable[[Inbound], None],
        session_expiry_s: int = 86400,
        login: BrokerLogin | None = None,
        protocol: str = "5",
    ) -> None:
        self.address = address
        self.protocol = protocol
        self.subscriptions = list(subscriptions)
        self.refused: str | None = None  # why the broker refused us for good (health shows it)
        self._client_id = client_id
        self._on_message = on_message
        login = login or BrokerLogin()
        scheme = "mqtts" if address.tls else "mqtt"
        self.mqtt = MqttClient(
            f"{scheme}://{address.host}:{address.port}",
            client_id,
            username=login.username,
            password=login.password,
            ca_file=login.ca_file,
            session_expiry_s=session_expiry_s,
            manual_ack=True,
            reconnect_delay_s=(1, 10),
            protocol=protocol,
        )
        self.mqtt.on_refused = self._refused
        self.mqtt.unmatched = self._message  # a session's old filter: still ingested, acked
        for topic_filter_ in self.subscriptions:
            self.mqtt.subscribe(topic_filter_, self._message, qos=1)

    @property
    def client(self) -> paho.Client:
        """The paho client underneath (tests check ``client.is_connected()``)."""
        return self.mqtt.raw

    @property
    def connected(self) -> threading.Event:
        return self.mqtt.connected_event

    @property
    def refusals(self) -> int:
        """Refused CONNACKs so far."""
        return self.mqtt.counters().refused

    def counters(self) -> ClientCounters:
        return self.mqtt.counters()

    def start(self) -> None:
        self.mqtt.start()

    def stop(self) -> None:
        self.mqtt.close()

    def ack(self, mid: int, qos: int) -> None:
        self.mqtt.ack(mid, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Receipts and zone configs: True when paho took the message on a live connection;
        False (nothing handed to paho) while the link is down: the caller keeps it."""
        client = self.mqtt.raw
        if not client.is_connected():
            return False
        info = client.publish(topic, payload, qos=qos)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return True
        if info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0:
            return True  # dropped between the check and the call: paho queued it
        log.warning("publish to %s failed: %s", topic, paho.error_string(info.rc))
        return False

    def publish_confirmed(
        self, topic: str, payload: bytes, timeout: float = ALERT_CONFIRM_S
    ) -> bool:
        """Routed alerts: True only once the broker PUBACKed; False leaves no queued copy
        (see :meth:`ringwatch.mqtt.MqttClient.publish_confirmed`)."""
        return self.mqtt.publish_confirmed(topic, payload, 1, timeout)

    def _refused(self, code: int) -> None:
        self.refused = (
            f"broker {self.address.host}:{self.address.port} refused client "
            f"{self._client_id!r}: {FATAL_CONNACK[code]} (0x{code:02x});"
            " not retrying: check broker_username / broker_password_file"
        )
        log.error("%s", self.refused)

    def _message(self, message: Message) -> None:
        try:
            self._on_message(
                Inbound(message.topic, bytes(message.payload), message.mid, message.qos)
            )
        except Exception:  # a handler bug must not kill paho's network thread
            log.exception("dropping a message from %s: handler failed", message.topic)


class IngestWorker:
    """Drains the message queue in batches: ingest + commit, then ack, then receipts."""

    def __init__(
        self,
        ingestor: BatchIngest,
        clock: Clock,
        batch_size: int = 200,
        max_wait_s: float = 0.02,
        retry_s: tuple[float, float] = (0.5, 5.0),
    ) -> None:
        self.ingestor = ingestor
        self.clock = clock
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.retry_s = retry_s
        self.inbox: queue.Queue[tuple[float, Inbound]] = queue.Queue()
        self.link: Link | None = None
        self._oldest: float | None = None  # monotonic receive time of the batch in hand
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def attach(self, link: Link) -> None:
        self.link = link

    def submit(self, message: Inbound) -> None:
        self.inbox.put((time.monotonic(), message))

    def lag(self) -> tuple[int, float | None]:
        """Messages received and not yet committed, and the age of the oldest (s)."""
        queued = self.inbox.qsize()
        oldest = self._oldest
        if oldest is None:
            with self.inbox.mutex:
                oldest = self.inbox.queue[0][0] if self.inbox.queue else None
        return queued, None if oldest is None else time.monotonic() - oldest

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-ingest", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._next_batch()
                if batch:
                    self.process(batch)
                self._oldest = None
            except Exception:  # the ingest thread must never die
                self.ingestor.stats.add(errors=1)
                log.exception("ingest worker round failed; going on")

    def _next_batch(self) -> list[Inbound]:
        self._oldest = None
        try:
            first, message = self.inbox.get(timeout=0.2)
        except queue.Empty:
            return []
        self._oldest = first
        batch = [message]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self.inbox.get(timeout=max(0.0, deadline - time.monotonic()))[1])
            except queue.Empty:
                break
        return batch

    def process(self, batch: list[Inbound]) -> None:
        """Commit ``batch`` (retrying while the database is down), then ack and send receipts."""
        result = self._commit(batch)
        if result is None:
            return  # stopping before the commit: unacked, the broker redelivers them
        for message in batch:
            if self.link is not None:
                self.link.ack(message.mid, message.qos)
        self._send_receipts(result)

    def _commit(self, batch: list[Inbound]) -> BatchResult | None:
        """Retry the whole batch with backoff while the database is unreachable; on any
        other failure take the batch one message at a time, dead-lettering the offender."""
        delay = self.retry_s[0]
        while not self._stop.is_set():
            try:
                try:
                    return self.ingestor.ingest(batch)
                except UNAVAILABLE:
                    raise
                except Exception:
                    self.ingestor.stats.add(errors=1)
                    log.exception("ingest failed; taking the batch one message at a time")
                    return self._one_by_one(batch)
            except UNAVAILABLE as exc:
                self.ingestor.stats.add(errors=1)
                log.error("database unavailable, retrying in %.1fs: %s", delay, exc)
            self._stop.wait(delay)
            delay = min(delay * 2, self.retry_s[1])
        return None

    def _one_by_one(self, batch: list[Inbound]) -> BatchResult:
        """Connection-level errors propagate (the whole batch is retried: storing is
        idempotent); any other failure dead-letters that message as ``internal_error``."""
        total = BatchResult()
        for message in batch:
            try:
                total.merge(self.ingestor.ingest([message]))
            except UNAVAILABLE:
                raise
            except Exception as exc:
                log.exception("message on %s failed; dead-lettering it", message.topic)
                total.merge(self._dead_letter(message, exc))
        return total

    def _dead_letter(self, message: Inbound, exc: Exception) -> BatchResult:
        reason = f"internal_error: {type(exc).__name__}"
        try:
            return self.ingestor.dead_letter(message, reason, f"{type(exc).__name__}: {exc}")
        except UNAVAILABLE:
            raise
        except Exception:
            self.ingestor.stats.add(errors=1)
            log.exception("could not dead-letter a message on %s; dropping it", message.topic)
            return BatchResult()

    def _send_receipts(self, result: BatchResult) -> None:
        if self.link is None:
            return
        for (site, device), ids in result.receipts.items():
            for start in range(0, len(ids), MAX_RECEIPT_IDS):
                receipt = Receipt(
                    site=site,
                    device=device,
                    event_ids=ids[start : start + MAX_RECEIPT_IDS],
                    sent_at=self.clock(),
                )
                if self.link.publish(receipt_topic(site, device), encode(receipt)):
                    self.ingestor.stats.add(receipts_sent=1)


__all__ = [
    "FATAL_CONNACK",
    "BatchIngest",
    "BrokerAddress",
    "BrokerLogin",
    "IngestWorker",
    "Link",
    "MqttLink",
    "Rejected",
    "ingest_subscriptions",
]
