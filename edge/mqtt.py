"""The edge's MQTT adapter: :mod:`ringwatch.mqtt` (core/mqtt.py), shared with the hub.

The edge needs nothing role-specific on top of it (the uplink, edge/uplink.py, holds the
outbox and receipts logic); the names stay importable from here."""

from __future__ import annotations

from ringwatch.mqtt import (
    DEFAULT_SESSION_EXPIRY_S,
    FATAL_CONNACK,
    PROTOCOLS,
    BrokerAddress,
    BrokerLogin,
    ClientCounters,
    Handler,
    Message,
    MqttAuthError,
    MqttClient,
    MqttError,
    MqttUrlError,
    Outgoing,
    parse_broker_url,
)

__all__ = [
    "DEFAULT_SESSION_EXPIRY_S",
    "FATAL_CONNACK",
    "PROTOCOLS",
    "BrokerAddress",
    "BrokerLogin",
    "ClientCounters",
    "Handler",
    "Message",
    "MqttAuthError",
    "MqttClient",
    "MqttError",
    "MqttUrlError",
    "Outgoing",
    "parse_broker_url",
]
