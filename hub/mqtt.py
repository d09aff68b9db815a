"""The hub's MQTT side: one small paho adapter (:class:`MqttLink`) and the ingest worker
that batches messages, commits them, then acks them and sends the devices their receipts.

paho: ``CallbackAPIVersion.VERSION2``, MQTT 5, a stable client id per worker, a persistent
session (``clean_start=False`` plus a session expiry, since paho's default wipes the session
on each new client), ``manual_ack=True`` so the broker redelivers whatever was not committed,
and the shared subscriptions made again in every ``on_connect`` (a shared subscription
restored from Mosquitto's persistence file receives nothing after a broker restart).

Login: a production broker (configs/mosquitto.conf) refuses anonymous clients, so a link
takes a :class:`BrokerLogin` (user name, password read from a file, CA file for mqtts://).
A CONNACK refusing the credentials stops all retrying (the same credentials cannot start
working) and is kept in :attr:`MqttLink.refused` for the health endpoint, as edge/mqtt.py does.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode
from paho.mqtt.subscribeoptions import SubscribeOptions
from sqlalchemy.exc import InterfaceError, OperationalError

from ringwatch.contract.messages import MAX_RECEIPT_IDS, Receipt, encode
from ringwatch.contract.topics import TopicKind, receipt_topic, shared_filter, topic_filter
from ringwatch.errors import ConfigError
from ringwatch.hub.clock import Clock
from ringwatch.hub.ingest import BatchResult, Inbound, IngestStats, Rejected
from ringwatch.hub.settings import HubSettings
from ringwatch.paho_client import new_client

log = logging.getLogger(__name__)
#: CONNACK reason codes after which retrying cannot help (MQTT 5 spec 3.2.2.2). Mosquitto
#: 2.0.11 answers a wrong password with 0x87, not 0x86.
FATAL_CONNACK = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x8A: "banned",
    0x8C: "bad authentication method",
}
INGEST_KINDS = (TopicKind.EVENTS, TopicKind.HEALTH, TopicKind.SENSORS)
# Connection-level database errors: the batch is retried as a whole. Any other error
# (DataError, IntegrityError, ProgrammingError, a bug) is one message's fault.
UNAVAILABLE = (OperationalError, InterfaceError)


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


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool

    @classmethod
    def from_url(cls, url: str) -> BrokerAddress:
        parts = urlsplit(url)
        if parts.username is not None or parts.password is not None:
            # Refused, not dropped: the URL is logged and shown by /health.
            raise ConfigError(
                "broker url: credentials in the URL are not accepted; set broker_username"
                " and broker_password_file in the hub settings"
            )
        if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
            raise ConfigError(f"broker url {url!r}: expected mqtt://host:port or mqtts://...")
        tls = parts.scheme == "mqtts"
        return cls(parts.hostname, parts.port or (8883 if tls else 1883), tls)


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """How a hub link logs in: user name + password, and the CA file for mqtts://."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: HubSettings) -> BrokerLogin:
        """The login from the hub settings; the password is read from its file (first line,
        without the line break). Raise :class:`ConfigError` naming the file, never the
        password, when it cannot be read or the file is set without a user name."""
        path = settings.broker_password_file
        if path is not None and settings.broker_username is None:
            raise ConfigError(
                "hub settings: broker_password_file is set but broker_username is not"
            )
        password = None
        if path is not None:
            try:
                lines = path.read_text(encoding="utf-8").splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                raise ConfigError(
                    f"broker_password_file {path}: cannot read it ({type(exc).__name__})"
                ) from None
            if not lines or not lines[0]:
                raise ConfigError(f"broker_password_file {path}: the first line is empty")
            password = lines[0]
        return cls(settings.broker_username, password, settings.broker_ca_file)


def ingest_subscriptions(group: str) -> list[str]:
    """Shared filters for events, health and sensor readings."""
    return [shared_filter(group, topic_filter(kind)) for kind in INGEST_KINDS]


class MqttLink:
    """A paho client: persistent session, manual acks, re-subscribe on every connect."""

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
        self.connected = threading.Event()
        self.refused: str | None = None  # why the broker refused us for good (health shows it)
        self.refusals = 0  # refused CONNACKs so far
        self._client_id = client_id
        self._on_message = on_message
        self._expiry = session_expiry_s
        self.client = new_client(client_id, protocol, session_expiry_s, manual_ack=True)
        login = login or BrokerLogin()
        if login.username is not None:
            self.client.username_pw_set(login.username, login.password)
        if address.tls:
            self.client.tls_set(ca_certs=str(login.ca_file) if login.ca_file else None)
        self.client.on_connect = self._connected
        self.client.on_disconnect = self._disconnected
        self.client.on_message = self._message
        self.client.reconnect_delay_set(1, 10)

    def start(self) -> None:
        if self.protocol == "3.1.1":
            self.client.connect_async(self.address.host, self.address.port, 30)
        else:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._expiry
            self.client.connect_async(
                self.address.host, self.address.port, 30, clean_start=False, properties=props
            )
        rc = self.client.loop_start()
        if rc != mqtt.MQTT_ERR_SUCCESS:
            raise ConfigError(f"cannot start the MQTT network thread: {mqtt.error_string(rc)}")

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
        self.connected.clear()

    def ack(self, mid: int, qos: int) -> None:
        if qos > 0:
            rc = self.client.ack(mid, qos)
            if rc != mqtt.MQTT_ERR_SUCCESS:
                log.warning("ack of mid %s failed: %s", mid, mqtt.error_string(rc))

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """True when paho took the message (sent, or queued and sent on reconnect); False
        when nothing was queued, so a caller that retries never makes a second copy.

        paho queues a QoS 1+ publish made while disconnected and sends it after reconnecting,
        yet returns ``MQTT_ERR_NO_CONN`` for it: that is success here. While the link is
        known to be down nothing is handed to paho at all (the caller keeps the message)."""
        if not self.client.is_connected():
            return False
        info = self.client.publish(topic, payload, qos=qos)
        if info.rc == mqtt.MQTT_ERR_SUCCESS:
            return True
        if info.rc == mqtt.MQTT_ERR_NO_CONN and qos > 0:
            return True  # dropped between the check and the call: paho queued it
        log.warning("publish to %s failed: %s", topic, mqtt.error_string(info.rc))
        return False

    def _connected(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self.refusals += 1
            log.error("broker refused the connection: %s (0x%02x)", reason, reason.value)
            if reason.value in FATAL_CONNACK:
                self.refused = (
                    f"broker {self.address.host}:{self.address.port} refused client "
                    f"{self._client_id!r}: {FATAL_CONNACK[reason.value]} (0x{reason.value:02x});"
                    " not retrying: check broker_username / broker_password_file"
                )
                log.error("%s", self.refused)
                client.disconnect()  # ends paho's loop: the same credentials cannot help
            return
        if self.protocol == "3.1.1":
            result, _ = client.subscribe([(f, 1) for f in self.subscriptions])
        else:
            result, _ = client.subscribe([(f, SubscribeOptions(qos=1)) for f in self.subscriptions])
        if result != mqtt.MQTT_ERR_SUCCESS:
            log.error("subscribe failed: %s", mqtt.error_string(result))
            return
        self.connected.set()

    def _disconnected(
        self,
        client: mqtt.Client,
        userdata: object,
        flags: mqtt.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        self.connected.clear()

    def _message(self, client: mqtt.Client, userdata: object, message: mqtt.MQTTMessage) -> None:
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
