"""Pumps the outbox to the broker and releases events on the hub's receipts.

PUBACK only says the broker has the message in memory (FACTS.md: a killed Mosquitto loses
everything since its last save), so an event leaves the outbox only when the hub says it has
committed it (:class:`~ringwatch.contract.messages.Receipt`). Rows without a receipt after
``receipt_timeout_s`` are published again; after every (re)connect, and so after a restart,
the whole outbox is replayed in order. Duplicates on the wire are expected; the hub
de-duplicates by event id.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ringwatch.contract.errors import ContractError
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import (
    DeviceState,
    DeviceStatus,
    Event,
    Health,
    Receipt,
    decode,
    encode,
)
from ringwatch.contract.topics import health_topic, receipt_topic, status_topic
from ringwatch.edge.config import BrokerConfig
from ringwatch.edge.mqtt import Handler, Message, MqttClient, MqttError, Outgoing
from ringwatch.edge.outbox import Outbox, Pending, Priority

log = logging.getLogger(__name__)

Clock = Callable[[], float]


class Transport(Protocol):
    """What the uplink needs from an MQTT client (:class:`MqttClient` is the real one)."""

    @property
    def connected(self) -> bool: ...

    @property
    def connects(self) -> int: ...

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool: ...

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None: ...


@dataclass(frozen=True, slots=True)
class UplinkCounters:
    published: int
    republished: int
    receipts: int
    released: int
    bad_messages: int
    dropped: int
    refused: int
    depth: int


class Uplink:
    """Publishes due outbox rows (QoS 1, in order) and releases them on receipts.

    ``clock`` times receipt timeouts; it defaults to the monotonic clock so an NTP step
    cannot stall or flood re-publishing (stored send times are reset on every connect).

    At most ``window`` events are awaiting a receipt at once (flow control, see
    docs/delivery.md); ``batch`` caps one :meth:`pump`.
    """

    def __init__(
        self,
        outbox: Outbox,
        client: Transport,
        site: str,
        device: str,
        receipt_timeout_s: float,
        clock: Clock = time.monotonic,
        batch: int = 200,
        window: int = 100,
    ) -> None:
        self.outbox = outbox
        self._client = client
        self._site = site
        self._device = device
        self._timeout = receipt_timeout_s
        self._clock = clock
        self._batch = batch
        self._window = window
        self._seen_connects = 0
        self._published = 0
        self._republished = 0
        self._receipts = 0
        self._released = 0
        self._bad = 0
        self._failures = 0  # pump rounds that raised (a damaged or full outbox, a bug)

    def start(self) -> None:
        """Subscribe to this device's receipts (re-made by the client on every reconnect)."""
        self._client.subscribe(receipt_topic(self._site, self._device), self.on_receipt, qos=1)

    def put(self, event: Event) -> None:
        """Queue an event durably; it is published by the next :meth:`pump`."""
        self.outbox.put(event)

    def put_health(self, health: Health) -> None:
        """Queue a heartbeat: dropped first when full, removed once handed to the broker."""
        topic = health_topic(health.site, health.device)
        self.outbox.put_raw(new_event_id(), topic, encode(health), Priority.HEALTH)

    def pump(self) -> int:
        """Publish one batch of due rows; return how many were handed to the broker."""
        if not self._client.connected:
            return 0
        connects = self._client.connects
        if connects != self._seen_connects:
            self._seen_connects = connects
            self.outbox.mark_unsent()  # new connection (or new process): replay all in order
        now = self._clock()
        # A window of unreceipted events: a backlog is not pushed faster than the hub
        # confirms it, which would time out and re-publish the whole backlog again.
        budget = min(self._batch, self._window - self.outbox.in_flight(now, self._timeout))
        if budget <= 0:
            return 0
        sent = self._publish(self.outbox.due(now, self._timeout, budget))
        return len(sent)

    def _publish(self, rows: list[Pending]) -> list[Pending]:
        sent: list[Pending] = []
        for row in rows:
            if not self._client.publish(row.topic, row.payload, qos=1):
                break  # connection lost: the rest stays due
            sent.append(row)
        self.outbox.mark_sent([r.seq for r in sent], self._clock())
        self.outbox.release_seqs([r.seq for r in sent if r.priority is Priority.HEALTH])
        self._published += len(sent)
        self._republished += sum(1 for r in sent if r.attempts > 0)
        return sent

    def run(self, stop: threading.Event, interval_s: float = 0.05) -> None:
        """Pump until ``stop`` is set (the agent runs this in its own thread)."""
        while not stop.is_set():
            try:
                if self.pump() == 0:
                    stop.wait(interval_s)
            except MqttError:
                raise
            except Exception as exc:
                self._failures += 1
                if self._failures == 1 or self._failures % 60 == 0:  # not every second for ever
                    log.exception("uplink pump failed (%d times so far); retrying", self._failures)
                else:
                    log.debug("uplink pump failed again: %s", exc)
                stop.wait(1.0)

    def on_receipt(self, message: Message) -> None:
        """Release the ids the hub has committed; malformed receipts are counted, not fatal."""
        try:
            receipt = decode(Receipt, message.payload)
        except ContractError as exc:
            self._bad += 1
            log.warning("bad receipt on %s: %s", message.topic, exc)
            return
        if (receipt.site, receipt.device) != (self._site, self._device):
            self._bad += 1
            log.warning("receipt for %s/%s ignored", receipt.site, receipt.device)
            return
        self._receipts += 1
        self._released += self.outbox.release(receipt.event_ids)

    def counters(self) -> UplinkCounters:
        stats = self.outbox.stats()
        return UplinkCounters(
            published=self._published,
            republished=self._republished,
            receipts=self._receipts,
            released=self._released,
            bad_messages=self._bad,
            dropped=stats.dropped,
            refused=stats.refused,
            depth=stats.depth,
        )


def status_message(
    site: str, device: str, state: DeviceState, version: str | None, at: dt.datetime | None
) -> Outgoing:
    """The retained device status (birth ``online``, last will / farewell ``offline``)."""
    status = DeviceStatus(site=site, device=device, state=state, agent_version=version, at=at)
    return Outgoing(status_topic(site, device), encode(status), qos=1, retain=True)


def probe_client(cfg: BrokerConfig, site: str, device: str) -> MqttClient:
    """A throw-away client for `edge check`: its own client id, no session, will or birth,
    so probing never takes over a running agent's session or flips its retained status."""
    return MqttClient(
        cfg.url,
        f"ringwatch-check-{site}-{device}",
        username=cfg.username,
        password=_read_password(cfg),
        ca_file=cfg.ca_file,
        keepalive_s=cfg.keepalive_s,
        session_expiry_s=0,
        protocol=cfg.protocol,
    )


def _read_password(cfg: BrokerConfig) -> str | None:
    if cfg.password_file is None:
        return None
    try:
        return cfg.password_file.read_text().strip()
    except OSError as exc:
        raise MqttError(f"broker.password_file {cfg.password_file}: {exc}") from None


def device_client(
    cfg: BrokerConfig, site: str, device: str, version: str, clock: Clock = time.time
) -> MqttClient:
    """An :class:`MqttClient` for this box: stable client id, will, birth and farewell."""

    def now() -> dt.datetime:
        return dt.datetime.fromtimestamp(clock(), dt.UTC)

    return MqttClient(
        cfg.url,
        cfg.client_id or f"ringwatch-{site}-{device}",
        username=cfg.username,
        password=_read_password(cfg),
        ca_file=cfg.ca_file,
        keepalive_s=cfg.keepalive_s,
        will=status_message(site, device, DeviceState.OFFLINE, version, None),
        birth=lambda: status_message(site, device, DeviceState.ONLINE, version, now()),
        farewell=lambda: status_message(site, device, DeviceState.OFFLINE, version, now()),
        protocol=cfg.protocol,
        retry_refused_s=cfg.retry_refused_s,
    )
