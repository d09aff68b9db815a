"""The one place a paho MQTT client is made, for the edge's adapter (edge/mqtt.py) and the
hub's (hub/mqtt.py): MQTT 5 by default, MQTT 3.1.1 for brokers that refuse 5 (a NATS
cluster's MQTT listener), where a persistent session is "clean session off" instead of a
session expiry interval."""

from __future__ import annotations

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion


def new_client(
    client_id: str, protocol: str, session_expiry_s: int, manual_ack: bool
) -> paho.Client:
    """A paho client speaking ``protocol`` ("5" or "3.1.1")."""
    if protocol == "3.1.1":
        return paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id,
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=session_expiry_s == 0,
            manual_ack=manual_ack,
        )
    return paho.Client(
        CallbackAPIVersion.VERSION2,
        client_id=client_id,
        protocol=MQTTProtocolVersion.MQTTv5,
        manual_ack=manual_ack,
    )
