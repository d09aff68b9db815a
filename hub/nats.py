"""The hub on a NATS cluster (``broker_kind: nats``): JetStream in, NATS subjects out.

Edges keep speaking MQTT 3.1.1 (QoS 1, retained status, last will) to any node's MQTT
listener; NATS maps MQTT topics to subjects (``/`` -> ``.``, a ``.`` inside a segment ->
``//``). A replicated (R3 where the cluster has 3 nodes) *work-queue* stream captures what
the edges publish on events, health and sensor topics; every hub worker pulls from one
durable consumer (explicit ack), so each message goes to one worker at a time, and one
that a worker took but did not ack (it died) is given to another after ``ack_wait_s``.
The :class:`~ringwatch.hub.mqtt.IngestWorker` acks after the commit, exactly as with
Mosquitto; receipts, commands and routed alerts are published on the NATS subjects that
MQTT subscribers of those topics receive.

:class:`NatsLink` runs nats-py's asyncio client in its own thread and offers the worker
the same small interface as :class:`~ringwatch.hub.mqtt.MqttLink` (``ack``, ``publish``,
``connected``, ``refused``). As with Mosquitto, a node's PUBACK to an edge does not mean
stored (FACTS: SIGKILL of the stream leader lost PUBACKed messages): the end-to-end
receipts stay the guarantee.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from typing import Any

import nats
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import api
from nats.js.errors import BadRequestError, NotFoundError

from ringwatch.contract.topics import TopicKind, topic_filter
from ringwatch.errors import ConfigError
from ringwatch.hub.ingest import Inbound

log = logging.getLogger(__name__)
STREAM = "RINGWATCH_INGEST"
INGEST_KINDS = (TopicKind.EVENTS, TopicKind.HEALTH, TopicKind.SENSORS)


def topic_to_subject(topic: str) -> str:
    """An MQTT topic as the NATS subject its MQTT subscribers are fed from."""
    return topic.replace(".", "\x00").replace("/", ".").replace("\x00", "//")


def subject_to_topic(subject: str) -> str:
    """The MQTT topic an edge published that NATS captured as ``subject``."""
    return subject.replace("//", "\x00").replace(".", "/").replace("\x00", ".")


def ingest_subjects() -> list[str]:
    """``ringwatch.v1.events.>`` etc.: what the work-queue stream captures."""
    return [topic_to_subject(topic_filter(k).split("/+")[0]) + ".>" for k in INGEST_KINDS]


def parse_servers(url: str) -> list[str]:
    """``nats://h1:4222,nats://h2:4222`` -> a list; refuses anything else by name."""
    servers = [u.strip() for u in url.split(",") if u.strip()]
    bad = [u for u in servers if not u.startswith(("nats://", "tls://"))]
    if not servers or bad:
        raise ConfigError(
            f"nats_url {url!r}: expected nats://host:port[,nats://host:port...]"
            + (f"; not a NATS URL: {bad[0]!r}" if bad else "")
        )
    return servers


class NatsLink:
    """One worker's JetStream pull consumer and publisher; see the module docstring."""

    def __init__(
        self,
        servers: Sequence[str],
        durable: str,
        on_message: Callable[[Inbound], None],
        *,
        name: str = "ringwatch-hub",
        ack_wait_s: float = 10.0,
        batch: int = 200,
        max_unacked: int = 1000,
        replicas: int = 3,
        stream: str = STREAM,
    ) -> None:
        self.servers = list(servers)
        self.durable = durable
        self.stream = stream
        self.name = name
        self.ack_wait_s = ack_wait_s
        self.batch = batch
        self.max_unacked = max_unacked
        self.replicas = replicas
        self.connected = threading.Event()
        self.refused: str | None = None
        self.errors = 0
        self._on_message = on_message
        self._pending: dict[int, Msg] = {}
        self._pending_lock = threading.Lock()
        self._mids = itertools.count(1)
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._nc: NatsClient | None = None
        self._stopping: asyncio.Event | None = None

    # -- the worker's side (any thread) -------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="hub-nats", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._thread is None:
            return
        if self._stopping is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # closed meanwhile: stopped already
                self._loop.call_soon_threadsafe(self._stopping.set)
        self._thread.join(timeout=15)
        self.connected.clear()

    def ack(self, mid: int, qos: int) -> None:
        with self._pending_lock:
            msg = self._pending.pop(mid, None)
        if msg is None or self._thread is None or not self._thread.is_alive():
            return
        asyncio.run_coroutine_threadsafe(msg.ack(), self._loop).add_done_callback(self._acked)

    def _acked(self, future: Future[None]) -> None:
        if future.exception() is not None:  # not acked: redelivered, then stored once
            self.errors += 1
            log.warning("NATS ack failed: %s", future.exception())

    def publish(self, topic: str, payload: bytes, qos: int = 1) -> bool:
        """Publish on the subject MQTT subscribers of ``topic`` get. False when not
        connected (nothing is queued then, so a caller retrying never makes a copy)."""
        nc = self._nc
        if nc is None or not nc.is_connected:
            return False
        future = asyncio.run_coroutine_threadsafe(
            nc.publish(topic_to_subject(topic), payload), self._loop
        )
        try:
            future.result(timeout=5)
        except Exception as exc:
            log.warning("NATS publish to %s failed: %s", topic, exc)
            return False
        return True

    @property
    def unacked(self) -> int:
        with self._pending_lock:
            return len(self._pending)

    # -- the loop thread ----------------------------------------------------------------------

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._main())
        except Exception:
            log.exception("NATS link stopped on an error")
        finally:
            self._loop.close()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        self._nc = await nats.connect(
            servers=self.servers,
            name=self.name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=0.5,
            connect_timeout=2,
            disconnected_cb=self._on_disconnected,
            reconnected_cb=self._on_reconnected,
            error_cb=self._on_error,
        )
        try:
            subscription = await self._bind()
            self.connected.set()
            while not self._stopping.is_set():
                await self._pull(subscription)
        finally:
            self.connected.clear()
            try:
                await self._nc.close()
            except Exception as exc:
                log.info("closing the NATS connection: %s", exc)

    async def _bind(self) -> Any:
        """Make sure the stream and the durable consumer exist (idempotent: every worker
        does this at start) and bind a pull subscription to the consumer."""
        assert self._nc is not None and self._stopping is not None
        js = self._nc.jetstream()
        while not self._stopping.is_set():
            try:
                await self._ensure_stream(js)
                await self._ensure_consumer(js)
                return await js.pull_subscribe_bind(self.durable, self.stream)
            except Exception as exc:  # no JetStream leader yet, a node restarting...
                self.errors += 1
                log.warning("NATS stream/consumer not ready (%s); retrying", exc)
                await asyncio.sleep(1.0)
        raise asyncio.CancelledError

    async def _ensure_stream(self, js: Any) -> None:
        config = api.StreamConfig(
            name=self.stream,
            subjects=ingest_subjects(),
            retention=api.RetentionPolicy.WORK_QUEUE,
            storage=api.StorageType.FILE,
            num_replicas=self.replicas,
        )
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            try:
                await js.add_stream(config)
            except BadRequestError as exc:  # another worker made it just now
                log.info("stream %s: %s", self.stream, exc)

    async def _ensure_consumer(self, js: Any) -> None:
        """The durable consumer, made by the first worker; the others use it as it is."""
        try:
            await js.consumer_info(self.stream, self.durable)
            return
        except NotFoundError:
            pass
        config = api.ConsumerConfig(
            durable_name=self.durable,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=self.ack_wait_s,
            max_deliver=-1,
            max_ack_pending=-1,
        )
        try:
            await js.add_consumer(self.stream, config)
        except BadRequestError as exc:  # another worker made it just now
            log.info("consumer %s: %s", self.durable, exc)

    async def _pull(self, subscription: Any) -> None:
        if self.unacked >= self.max_unacked:
            await asyncio.sleep(0.02)  # the worker is behind: let it catch up first
            return
        try:
            messages = await subscription.fetch(self.batch, timeout=0.5)
        except (TimeoutError, nats.errors.TimeoutError):
            return
        except Exception as exc:
            self.errors += 1
            log.warning("NATS fetch failed: %s", exc)
            await asyncio.sleep(0.5)
            return
        for msg in messages:
            mid = next(self._mids)
            with self._pending_lock:
                self._pending[mid] = msg
            try:
                self._on_message(Inbound(subject_to_topic(msg.subject), bytes(msg.data), mid, 1))
            except Exception:
                log.exception("dropping a NATS message from %s: handler failed", msg.subject)

    async def _on_disconnected(self) -> None:
        log.warning("disconnected from NATS")

    async def _on_reconnected(self) -> None:
        log.info("reconnected to NATS")

    async def _on_error(self, exc: Exception) -> None:
        log.warning("NATS: %s", exc)
