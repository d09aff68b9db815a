"""``ringwatch.mqtt``: the one paho-mqtt 2.x adapter the edge (edge/mqtt.py, edge/uplink.py)
and the hub (hub/mqtt.py, hub/zone_configs.py) publish and subscribe through.

MQTT 5 by default, because only MQTT 5 lets us see a broker's refusal: a PUBACK with reason
0x87 (not authorised by the ACL) and CONNACK reason codes; MQTT 3.1.1 (a NATS cluster's MQTT
listener) where a broker refuses 5. Sessions are persistent on purpose: ``clean_start=False``
with a session expiry, because paho's default (``MQTT_CLEAN_START_FIRST_ONLY``) wipes the
session on the first connect of every new ``Client``, i.e. on every process restart, and with
it what the broker queued for us while we were away (../shared/docs/FACTS.md).

What the adapter promises:

- broker URLs ``mqtt://[user[:password]@]host[:1883]`` / ``mqtts://...:8883`` are parsed here
  (:func:`parse_broker_url`); a bad scheme, host or port is a :class:`MqttUrlError` naming the
  bad value (it is a :class:`~ringwatch.errors.ConfigError` too);
- subscriptions are (re)made inside ``on_connect``, after every reconnect (a subscription
  restored from the broker's persistence file may receive nothing, FACTS.md); a SUBACK
  refusal (MQTT 5 reason >= 0x80, 3.1.1 0x80) is logged as an error, counted and kept in
  :attr:`MqttClient.refused_subscriptions`;
- a last will (retained) and a birth message (retained) on every connect;
- a refused CONNACK is recorded; bad credentials / not authorised stop all retrying and
  :meth:`MqttClient.wait_connected` raises :class:`MqttAuthError` naming the reason, unless
  the client is made with ``retry_refused_s``: a field box (edge/uplink.py) keeps retrying,
  backing off to that many seconds, because a broker can let it in again (a hub's flood
  quarantine lifted, hub/quarantine.py; a password fixed) and nobody is there to restart it;
  :attr:`MqttClient.refused_now` says why it is out meanwhile;
- every paho return code is checked (``loop_start`` included); a PUBACK refusal is counted
  and makes :meth:`MqttClient.publish_wait` / :meth:`MqttClient.publish_confirmed` report
  failure; handler exceptions are logged and counted, never allowed to kill paho's thread;
- :meth:`MqttClient.publish_confirmed` is exact: True only once the broker PUBACKed the
  message; False leaves no copy in paho's queue that would go out after a reconnect (the
  caller's retry is then the only copy);
- paho messages become our own frozen :class:`Message`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import paho.mqtt.client as paho
from paho.mqtt.client import (
    mqtt_ms_wait_for_puback,
    mqtt_ms_wait_for_pubcomp,
    mqtt_ms_wait_for_pubrec,
)
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from ringwatch.errors import ConfigError, RingwatchError
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


class MqttUrlError(MqttError, ConfigError):
    """A broker URL is malformed (scheme, host, port, credentials); names the bad part."""


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
    """Where a broker listens; ``username`` / ``password`` only when the URL carried them."""

    host: str
    port: int
    tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)

    @classmethod
    def from_url(cls, url: str, *, credentials: bool = False) -> BrokerAddress:
        """Parse ``url``; user:password in it only where ``credentials`` allows it (a URL
        is logged and shown by /health, so by default credentials there are refused)."""
        return parse_broker_url(url, credentials=credentials)


def _redacted(url: str) -> str:
    """``url`` without the password, for error messages."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    return parts._replace(netloc=f"{parts.username}:***@{host}").geturl()


def parse_broker_url(url: str, *, credentials: bool = True) -> BrokerAddress:
    """``mqtt://[user[:password]@]host[:1883]`` or ``mqtts://...[:8883]``.

    Raise :class:`MqttUrlError` naming what is wrong (the password is never repeated):
    scheme, missing host, a port that is not a number in 1-65535, or credentials where
    ``credentials`` is False."""
    parts = urlsplit(url)
    shown = _redacted(url)
    if parts.scheme not in ("mqtt", "mqtts"):
        raise MqttUrlError(
            f"broker url {shown!r}: scheme {parts.scheme!r}, expected mqtt://host:port"
            " or mqtts://host:port"
        )
    if not parts.hostname:
        raise MqttUrlError(f"broker url {shown!r}: no host (expected mqtt://host:port)")
    tls = parts.scheme == "mqtts"
    netloc_port = parts.netloc.rsplit("@", 1)[-1].rpartition("]")[2]
    raw_port = netloc_port.rpartition(":")[2] if ":" in netloc_port else ""
    try:
        given = parts.port
    except ValueError:
        given = -1
    port = (8883 if tls else 1883) if given is None else given
    if port < 1 or port > 65535 or (raw_port and not raw_port.isdigit()):
        raise MqttUrlError(f"broker url {shown!r}: port {raw_port!r} is not a number in 1-65535")
    if parts.username is not None or parts.password is not None:
        if not credentials:
            raise MqttUrlError(
                "broker url: credentials in the URL are not accepted here; set broker_username"
                " and broker_password_file in the hub settings"
            )
        if not parts.username:
            raise MqttUrlError(f"broker url {shown!r}: a password without a user name")
        return BrokerAddress(parts.hostname, port, tls, parts.username, parts.password)
    return BrokerAddress(parts.hostname, port, tls)


class LoginSettings(Protocol):
    """The settings a :class:`BrokerLogin` is read from (the hub's ``HubSettings``)."""

    @property
    def broker_username(self) -> str | None: ...

    @property
    def broker_password_file(self) -> Path | None: ...

    @property
    def broker_ca_file(self) -> Path | None: ...


@dataclass(frozen=True, slots=True)
class BrokerLogin:
    """How a client logs in: user name + password, and the CA file for mqtts://."""

    username: str | None = None
    password: str | None = field(default=None, repr=False)
    ca_file: Path | None = None

    @classmethod
    def from_settings(cls, settings: LoginSettings) -> BrokerLogin:
        """The login from settings; the password is read from its file (first line, without
        the line break). Raise :class:`~ringwatch.errors.ConfigError` naming the file, never
        the password, when it cannot be read or the file is set without a user name."""
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

    def sibling(self, suffix: str) -> BrokerLogin | None:
        """The login of another link of the same process: ``<user><suffix>``, same password
        and CA (a broker that binds client ids to user names needs one user per link);
        None without a user name."""
        if self.username is None:
            return None
        return replace(self, username=self.username + suffix)


@dataclass(frozen=True, slots=True)
class ClientCounters:
    connects: int
    disconnects: int
    refused: int
    handler_errors: int
    publish_rejected: int
    subscribe_refused: int = 0
    publish_withdrawn: int = 0  # confirmed publishes timed out and taken back out of paho


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
    fatal_code: int | None = None
    subscribe_refused: int = 0
    publish_withdrawn: int = 0
    pending_subs: dict[int, str] = field(default_factory=dict)
    refused_subscriptions: dict[str, str] = field(default_factory=dict)
    refused_now: str | None = None  # retrying after a fatal CONNACK (retry_refused_s)


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
        retry_refused_s: int | None = None,
    ) -> None:
        self.address = parse_broker_url(url)
        if username is None and self.address.username is not None:
            username, password = self.address.username, self.address.password
        self.client_id = client_id
        self._keepalive = keepalive_s
        self._expiry = session_expiry_s
        if protocol not in PROTOCOLS:
            raise MqttError(f"MQTT protocol {protocol!r}: expected one of {sorted(PROTOCOLS)}")
        self.protocol = protocol
        self._birth = birth
        self._farewell = farewell
        self._reconnect_delay_s = reconnect_delay_s
        self._retry_refused_s = retry_refused_s
        if retry_refused_s is not None and retry_refused_s < 1:
            raise MqttError(f"retry_refused_s {retry_refused_s}: must be at least 1 s")
        self._subs: dict[str, tuple[int, Handler]] = {}
        self._lock = threading.Lock()
        self._state = _State()
        self._paho = new_client(client_id, protocol, session_expiry_s, manual_ack)
        self._configure(username, password, ca_file, will, reconnect_delay_s)
        self.on_refused: Callable[[int], None] | None = None  # fatal CONNACK code, net thread
        self.unmatched: Handler | None = None  # messages no subscription of ours matches

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

    def wait_subscribed(self, timeout: float) -> bool:
        """Wait until connected and every subscription sent has its SUBACK (granted or
        refused: see :meth:`counters`); a message published before that may not reach us."""
        deadline = time.monotonic() + timeout
        if not self.wait_connected(timeout):
            return False
        while time.monotonic() < deadline:
            with self._lock:
                if not self._state.pending_subs:
                    return True
            time.sleep(0.01)
        return False

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
    def connected_event(self) -> threading.Event:
        """Set while connected (after the subscriptions were sent)."""
        return self._state.connected

    @property
    def raw(self) -> paho.Client:
        """The underlying paho client (for checks such as ``is_connected()``)."""
        return self._paho

    @property
    def fatal_error(self) -> str | None:
        """Why the client gave up for good (bad credentials...), or None."""
        return self._state.fatal

    @property
    def refused_now(self) -> str | None:
        """With ``retry_refused_s``: why the broker keeps refusing us (we keep retrying);
        None once a connection succeeds."""
        return self._state.refused_now

    @property
    def fatal_code(self) -> int | None:
        """The CONNACK reason code that made the client give up, or None."""
        return self._state.fatal_code

    @property
    def refused_subscriptions(self) -> dict[str, str]:
        """Topic filter -> the broker's SUBACK refusal, for filters refused so far."""
        with self._lock:
            return dict(self._state.refused_subscriptions)

    def counters(self) -> ClientCounters:
        s = self._state
        return ClientCounters(
            s.connects,
            s.disconnects,
            s.refused,
            s.handler_errors,
            s.publish_rejected,
            s.subscribe_refused,
            s.publish_withdrawn,
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

    def publish_confirmed(
        self, topic: str, payload: bytes, qos: int = 1, timeout: float = 5.0
    ) -> bool:
        """Publish at QoS >= 1 and report True only when the broker PUBACKed it (and not
        with a refusal). False means: no copy is left anywhere in this client. Nothing is
        handed to paho while disconnected, and a message still unacknowledged at
        ``timeout`` is taken back out of paho's queue, so it is not re-sent after a
        reconnect; the caller's retry is then the only copy. (If the broker stored it and
        only its PUBACK was lost, the retry makes a repeat: recipients de-duplicate.)"""
        if qos < 1:
            raise ValueError("publish_confirmed needs QoS 1 or 2")
        self._raise_if_fatal()
        if not self._paho.is_connected():
            return False
        info = self._paho.publish(topic, payload, qos)
        if info.rc not in (MQTTErrorCode.MQTT_ERR_SUCCESS, MQTTErrorCode.MQTT_ERR_NO_CONN):
            log.warning("publish to %s failed: %s", topic, paho.error_string(info.rc))
            return False
        deadline = time.monotonic() + timeout
        while not info.is_published() and time.monotonic() < deadline:
            time.sleep(0.005)
        if not info.is_published() and not self._withdraw(info.mid):
            return False
        return info.mid not in self._state.rejected_mids

    def _withdraw(self, mid: int) -> bool:
        """Take an unacknowledged message out of paho's queue; True if it was acknowledged
        meanwhile after all. paho keeps outgoing messages in ``_out_messages`` under
        ``_out_message_mutex`` and pops them there when their PUBACK comes (paho 2.x)."""
        p = self._paho
        with p._out_message_mutex:
            msg = p._out_messages.pop(mid, None)
            if msg is None:
                return True  # acknowledged between the wait and the lock
            if msg.state in (
                mqtt_ms_wait_for_puback,
                mqtt_ms_wait_for_pubrec,
                mqtt_ms_wait_for_pubcomp,
            ):
                p._inflight_messages -= 1
                if p._max_inflight_messages > 0 and p.is_connected():
                    p._update_inflight()
        self._state.publish_withdrawn += 1
        log.warning("no PUBACK for mid %d in time: withdrawn, the caller retries", mid)
        return False

    def ack(self, mid: int, qos: int) -> None:
        """Acknowledge a message in manual-ack mode (after it is safely committed)."""
        if qos < 1:
            return
        rc = self._paho.ack(mid, qos)
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("ack of mid %d failed: %s", mid, paho.error_string(rc))

    def _send_subscribe(self, topic_filter: str, qos: int) -> bool:
        with self._lock:  # the SUBACK may come before subscribe() returns
            rc, mid = self._paho.subscribe(topic_filter, qos)
            if rc == MQTTErrorCode.MQTT_ERR_SUCCESS and mid is not None:
                if len(self._state.pending_subs) > 1000:
                    self._state.pending_subs.clear()
                self._state.pending_subs[mid] = topic_filter
        if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
            log.warning("subscribe %s failed: %s", topic_filter, paho.error_string(rc))
            return False
        return True

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
        if self._state.refused_now is not None:
            log.warning("the broker lets us in again (was: %s)", self._state.refused_now)
            self._state.refused_now = None
            client.reconnect_delay_set(*self._reconnect_delay_s)
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
        if s.refused_now is not None:
            log.debug("%s", s.last_refusal)  # said once when the refusals began
            return
        log.warning("%s", s.last_refusal)
        if reason.value in FATAL_CONNACK and self._retry_refused_s is not None:
            # Back off (paho doubles the delay up to this) and keep trying: see the module
            # docstring. Publishing meanwhile answers "not connected" as any outage does.
            s.refused_now = (
                f"broker {self.address.host}:{self.address.port} refused client "
                f"{self.client_id!r}: {FATAL_CONNACK[reason.value]}; retrying every "
                f"{self._retry_refused_s} s at most"
            )
            log.error("%s", s.refused_now)
            self._paho.reconnect_delay_set(self._reconnect_delay_s[0], self._retry_refused_s)
            return
        if reason.value in FATAL_CONNACK:
            s.fatal_code = reason.value
            s.fatal = (
                f"broker {self.address.host}:{self.address.port} refused client "
                f"{self.client_id!r}: {FATAL_CONNACK[reason.value]}; not retrying"
            )
            log.error("%s", s.fatal)
            self._paho.disconnect()  # ends loop_forever: no retry with the same credentials
            if self.on_refused is not None:
                self.on_refused(reason.value)

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
        matching = self._matching(msg.topic)
        if not matching and self.unmatched is not None:
            matching = [("<unmatched>", (msg.qos, self.unmatched))]
        for topic_filter, (_, handler) in matching:
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
        with self._lock:
            topic_filter = self._state.pending_subs.pop(mid, f"<mid {mid}>")
            for reason in reasons:
                if reason.is_failure:  # MQTT 5: >= 0x80; 3.1.1: 0x80
                    self._state.subscribe_refused += 1
                    why = f"{reason} (0x{reason.value:02x})"
                    self._state.refused_subscriptions[topic_filter] = why
                    log.error("broker refused the subscription to %s: %s", topic_filter, why)
                else:
                    self._state.refused_subscriptions.pop(topic_filter, None)


def _strip_share(topic_filter: str) -> str:
    """``$share/group/a/b`` -> ``a/b`` for matching incoming topics."""
    if topic_filter.startswith("$share/"):
        return topic_filter.split("/", 2)[2]
    return topic_filter
