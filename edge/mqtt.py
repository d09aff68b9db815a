"""The one small adapter over paho-mqtt 2.x that everything in the edge publishes through.

MQTT 5 rather than 3.1.1, because only MQTT 5 lets us see a broker's refusal: a PUBACK with
reason 0x87 (not authorised by the ACL) and CONNACK reason codes; 3.1.1 drops a forbidden
publish silently. Sessions are persistent on purpose: ``clean_start=False`` with a session
expiry, because paho's default (``MQTT_CLEAN_START_FIRST_ONLY``) wipes the session on the
first connect of every new ``Client``, i.e. on every process restart, and with it the
receipts the broker queued for us while we were away (../shared/docs/FACTS.md).

What the adapter promises:

- subscriptions are (re)made inside ``on_connect``, after every reconnect (a subscription
  restored from the broker's persistence file may receive nothing, FACTS.md);
- a last will (retained) and a birth message (retained) on every connect;
- a refused CONNACK is recorded; bad credentials / not authorised stop all retrying and
  :meth:`MqttClient.wait_connected` raises :class:`MqttAuthError` naming the reason;
- every paho return code is checked; handler exceptions are logged and counted, never
  allowed to kill paho's network thread;
- paho messages become our own frozen :class:`Message`.

It imports nothing else from the edge runtime so the pattern can be copied by the hub.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ringwatch.errors import RingwatchError
from ringwatch.paho_client import new_client

log = logging.getLogger(__name__)

#: CONNACK reason codes after which retrying cannot help (MQTT 5 spec 3.2.2.2).
FATAL_CONNACK = {
    0x84: "unsupported protocol version",
    0x85: "client identifier not valid",
    0x86: "bad user name or password",
    0x87: "not authorized",
    0x8A: "banned",
    0x8C: "bad authentication method",
}
DEFAULT_SESSION_EXPIRY_S = 7 * 24 * 3600
#: "5" (Mosquitto) or "3.1.1" (NATS' MQTT listener; no session expiry there).
PROTOCOLS = frozenset({"5", "3.1.1"})


class MqttError(RingwatchError):
    """The broker could not be reached, refused us, or refused a request."""


class MqttAuthError(MqttError):
    """The broker refused our credentials; the client stopped retrying."""


@dataclass(frozen=True, slots=True)
class Message:
    """One received message. ``mid`` is what :meth:`MqttClient.ack` needs in manual-ack mode."""

    topic: str
    payload: bytes
    qos: int
    retain: bool
    mid: int = 0
    dup: bool = False  # the broker's QoS 1 redelivery of a message it may have sent already


@dataclass(frozen=True, slots=True)
class Outgoing:
    """A message to publish later: the last will and the birth message."""

    topic: str
    payload: bytes
    qos: int = 1
    retain: bool = True


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    host: str
    port: int
    tls: bool


def parse_broker_url(url: str) -> BrokerAddress:
    """``mqtt://host[:1883]`` or ``mqtts://host[:8883]``; raise :class:`MqttError` if not."""
    parts = urlsplit(url)
    if parts.scheme not in ("mqtt", "mqtts") or not parts.hostname:
        raise MqttError(f"broker url {url!r}: expected mqtt://host:port or mqtts://host:port")
    tls = parts.scheme == "mqtts"
    try:
        port = parts.port or (8883 if tls else 1883)
    except ValueError:
        raise MqttError(f"broker url {url!r}: port is not a number in 1-65535") from None
    return BrokerAddress(parts.hostname, port, tls)


@dataclass(frozen=True, slots=True)
class ClientCounters:
    connects: int
    disconnects: int
    refused: int
    handler_errors: int
    publish_rejected: int


Handler = Callable[[Message], None]


@dataclass
class _State:
    connected: threading.Event = field(default_factory=threading.Event)
    fatal: str | None = None
    last_refusal: str | None = None
    connects: int = 0
    disconnects: int = 0
    refused: int = 0
    handler_errors: int = 0
    publish_rejected: int = 0
    rejected_mids: set[int] = field(default_factory=set)


class MqttClient:
    """A persistent-session MQTT 5 client with last will, birth and re-subscription.

    Call :meth:`start` once (it does not block; paho's thread connects and reconnects with
    backoff), :meth:`subscribe` any time, :meth:`close` at the end.
    """

    def __init__(
        self,
        url: str,
        client_id: str,
        *,
        username: str | None = None,
        password: str | None = None,
        ca_file: Path | None = None,
        keepalive_s: int = 30,
        session_expiry_s: int = DEFAULT_SESSION_EXPIRY_S,
        will: Outgoing | None = None,
        birth: Callable[[], Outgoing] | None = None,
        farewell: Callable[[], Outgoing] | None = None,
        manual_ack: bool = False,
        reconnect_delay_s: tuple[int, int] = (1, 4),
        protocol: str = "5",
    ) -> None:
        self.address = parse_broker_url(url)
        self.client_id = client_id
        self._keepalive = keepalive_s
        self._expiry = session_expiry_s
        if protocol not in PROTOCOLS:
            raise MqttError(f"MQTT protocol {protocol!r}: expected one of {sorted(PROTOCOLS)}")
        self.protocol = protocol
        self._birth = birth
        self._farewell = farewell
        self._subs: dict[str, tuple[int, Handler]] = {}
        self._lock = threading.Lock()
        self._state = _State()
        self._paho = new_client(client_id, protocol, session_expiry_s, manual_ack)
        self._configure(username, password, ca_file, will, reconnect_delay_s)

    def _configure(
        self,
        username: str | None,
        password: str | None,
        ca_file: Path | None,
        will: Outgoing | None,
        reconnect_delay_s: tuple[int, int],
    ) -> None:
        p = self._paho
        if username is not None:
            p.username_pw_set(username, password)
        if self.address.tls:
            p.tls_set(ca_certs=str(ca_file) if ca_file else None)
        if will is not None:
            p.will_set(will.topic, will.payload, will.qos, will.retain)
        p.reconnect_delay_set(*reconnect_delay_s)
        p.on_connect = self._on_connect
        p.on_connect_fail = self._on_connect_fail
        p.on_disconnect = self._on_disconnect
        p.on_message = self._on_message
        p.on_publish = self._on_publish
        p.on_subscribe = self._on_subscribe

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Begin connecting in paho's network thread (retries until :meth:`close`)."""
        if self.protocol == "3.1.1":  # the session lives as long as the broker keeps it
            self._paho.connect_async(self.address.host, self.address.port, self._keepalive)
        else:
            props = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
            props.SessionExpiryInterval = self._expiry
            self._paho.connect_async(
                self.address.host,
                self.address.port,
                self._keepalive,
                clean_start=False,
                properties=props,
            )
        rc = self._paho.loop_start()
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            raise MqttError(f"cannot start the MQTT network thread: {paho.error_string(rc)}")

    def wait_connected(self, timeout: float) -> bool:
        """Wait for a CONNACK; raise :class:`MqttAuthError` if the broker refused us for good."""
        deadline = time.monotonic() + timeout
        while not self._state.connected.wait(0.05):
            self._raise_if_fatal()
            if time.monotonic() >= deadline:
                return False
        return True

    def close(self, timeout: float = 2.0) -> None:
        """Publish the farewell (if connected), disconnect and stop the network thread."""
        if self._farewell is not None and self.connected:
            msg = self._farewell()
            info = self._paho.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                info.wait_for_publish(timeout)
        self._paho.disconnect()
        self._paho.loop_stop()
        # paho leaves its wake-up socket pair open until the client is garbage collected
        # (a ResourceWarning then, an error under pytest -W error): close it now.
        self._paho._reset_sockets(sockpair_only=True)

    @property
    def connected(self) -> bool:
        return self._state.connected.is_set()

    @property
    def connects(self) -> int:
        """How many CONNACKs succeeded so far (a change means: a new connection)."""
        return self._state.connects

    @property
    def fatal_error(self) -> str | None:
        """Why the client gave up for good (bad credentials...), or None."""
        return self._state.fatal

    def counters(self) -> ClientCounters:
        s = self._state
        return ClientCounters(
            s.connects, s.disconnects, s.refused, s.handler_errors, s.publish_rejected
        )

    # -- requests --------------------------------------------------------------------------

    def subscribe(self, topic_filter: str, handler: Handler, qos: int = 1) -> None:
        """Route messages matching ``topic_filter`` to ``handler`` (kept across reconnects)."""
        with self._lock:
            self._subs[topic_filter] = (qos, handler)
        if self.connected:
            self._send_subscribe(topic_filter, qos)

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> bool:
        """Hand a message to paho; True if it was sent or queued on a live connection.

        False when not connected (paho may still send a queued QoS>0 copy after reconnect:
        callers that need delivery keep their own copy, as the outbox does).
        """
        self._raise_if_fatal()
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
            return True
        if info.rc != MQTTErrorCode.MQTT_ERR_NO_CONN:
            log.warning("publish to %s failed: %s", topic, paho.error_string(info.rc))
        return False

    def publish_wait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 5.0
    ) -> bool:
        """Publish and wait for the broker's PUBACK; True if it came (and was not a refusal)."""
        self._raise_if_fatal()
        info = self._paho.publish(topic, payload, qos, retain)
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            return False
        try:
            info.wait_for_publish(timeout)
        except RuntimeError:
            return False
        return info.is_published() and info.mid not in self._state.rejected_mids

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message in manual-ack mode (after it is safely committed)."""
        rc = self._paho.ack(mid, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("ack of mid %d failed: %s", mid, paho.error_string(rc))

    def _send_subscribe(self, topic_filter: str, qos: int) -> None:
        rc, _ = self._paho.subscribe(topic_filter, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("subscribe %s failed: %s", topic_filter, paho.error_string(rc))

    def _raise_if_fatal(self) -> None:
        if self._state.fatal is not None:
            raise MqttAuthError(self._state.fatal)

    # -- paho callbacks (network thread) ----------------------------------------------------

    def _on_connect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.ConnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if reason.is_failure:
            self._refused(reason)
            return
        self._state.connects += 1
        with self._lock:
            subs = list(self._subs.items())
        for topic_filter, (qos, _) in subs:
            self._send_subscribe(topic_filter, qos)
        if self._birth is not None:
            msg = self._birth()
            info = client.publish(msg.topic, msg.payload, msg.qos, msg.retain)
            if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                log.warning("birth message failed: %s", paho.error_string(info.rc))
        self._state.connected.set()
        log.info("connected to %s:%d", self.address.host, self.address.port)

    def _refused(self, reason: ReasonCode) -> None:
        s = self._state
        s.refused += 1
        s.last_refusal = f"broker refused the connection: {reason} (0x{reason.value:02x})"
        log.warning("%s", s.last_refusal)
        if reason.value in FATAL_CONNACK:
            s.fatal = (
                f"broker {self.address.host}:{self.address.port} refused client "
                f"{self.client_id!r}: {FATAL_CONNACK[reason.value]}; not retrying"
            )
            self._paho.disconnect()  # ends loop_forever: no retry with the same credentials

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        log.debug("connect to %s:%d failed", self.address.host, self.address.port)

    def _on_disconnect(
        self,
        client: paho.Client,
        userdata: Any,
        flags: paho.DisconnectFlags,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        if self._state.connected.is_set():
            self._state.disconnects += 1
            log.warning("disconnected from broker: %s", reason)
        self._state.connected.clear()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        message = Message(
            msg.topic, bytes(msg.payload), msg.qos, bool(msg.retain), msg.mid, bool(msg.dup)
        )
        for topic_filter, (_, handler) in self._matching(msg.topic):
            try:
                handler(message)
            except Exception:
                self._state.handler_errors += 1
                log.exception("handler for %s failed on %s", topic_filter, msg.topic)

    def _matching(self, topic: str) -> list[tuple[str, tuple[int, Handler]]]:
        with self._lock:
            subs = list(self._subs.items())
        return [(f, s) for f, s in subs if paho.topic_matches_sub(_strip_share(f), topic)]

    def _on_publish(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reason: ReasonCode,
        properties: Properties | None,
    ) -> None:
        # MQTT 5 reports an ACL refusal (0x87) only here; wait_for_publish() says success.
        if reason.is_failure:
            self._state.publish_rejected += 1
            if len(self._state.rejected_mids) > 1000:
                self._state.rejected_mids.clear()
            self._state.rejected_mids.add(mid)
            log.warning("broker rejected publish mid %d: %s", mid, reason)

    def _on_subscribe(
        self,
        client: paho.Client,
        userdata: Any,
        mid: int,
        reasons: list[ReasonCode],
        properties: Properties | None,
    ) -> None:
        for reason in reasons:
            if reason.is_failure:
                log.warning("broker refused subscription mid %d: %s", mid, reason)


def _strip_share(topic_filter: str) -> str:
    """``$share/group/a/b`` -> ``a/b`` for matching incoming topics."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter
