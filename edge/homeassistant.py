"""Home Assistant MQTT discovery for e-bike sheds (opt-in per site: ``home_assistant:``).

One Home Assistant device per shed; per charging bay a sensor each for current (A),
voltage (V) and temperature (°C), read straight from the bay's sensor topic, and a
binary_sensor for overheating; per shed a binary_sensor for the fire alarm, from the shed
camera's shed events. Every entity is available while the edge box's retained status topic
says ``online`` (its last will says ``offline``).

The fields are Home Assistant's MQTT discovery fields (sensor and binary_sensor platforms:
``state_topic``, ``value_template``, ``device_class``, ``unit_of_measurement``,
``state_class``, ``unique_id``, ``object_id``, ``availability``, ``device``); the payloads
are published retained to ``<prefix>/<component>/<node_id>/<object_id>/config``.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass
from typing import Any, Protocol

from ringwatch.contract.topics import EventKind, event_topic, sensor_topic, status_topic
from ringwatch.edge.config import CameraConfig, HomeAssistantConfig, SiteConfig

log = logging.getLogger(__name__)

# (key, name, reading field, device_class, unit): state_class is "measurement" for each
BAY_SENSORS = (
    ("current", "current", "current_a", "current", "A"),
    ("voltage", "voltage", "voltage_v", "voltage", "V"),
    ("temperature", "temperature", "temperature_c", "temperature", "°C"),
)


@dataclass(frozen=True, slots=True)
class Discovery:
    """One retained discovery message."""

    topic: str
    config: dict[str, Any]

    @property
    def payload(self) -> bytes:
        return json.dumps(self.config, ensure_ascii=False).encode()


def _safe(text: str) -> str:
    """Node and object ids allow only ``[a-zA-Z0-9_-]``; our ids may hold dots."""
    return re.sub(r"[^a-zA-Z0-9_-]", "_", text)


def discovery_messages(site: SiteConfig) -> list[Discovery]:
    """Every discovery message for the site's sheds (none when the site has not opted in)."""
    ha = site.home_assistant
    if ha is None:
        return []
    out: list[Discovery] = []
    for cam in site.cameras:
        if cam.shed is not None and cam.shed in ha.bays:
            out += shed_messages(site, cam, ha)
    return out


def shed_messages(site: SiteConfig, cam: CameraConfig, ha: HomeAssistantConfig) -> list[Discovery]:
    assert cam.shed is not None
    node = _safe(f"ringwatch_{site.site}_{cam.shed}")
    common = {
        "availability": [
            {
                "topic": status_topic(site.site, site.device),
                "value_template": "{{ value_json.state }}",
                "payload_available": "online",
                "payload_not_available": "offline",
            }
        ],
        "device": {
            "identifiers": [node],
            "name": f"E-bike shed {cam.shed} ({site.site})",
            "manufacturer": "Ringwatch",
            "model": "E-bike shed",
        },
    }
    out = [_fire_alarm(site, cam, node, ha, common)]
    for bay in ha.bays[cam.shed]:
        out += _bay(site, cam.shed, bay, node, ha, common)
    return out


def _entity(
    ha: HomeAssistantConfig, component: str, node: str, key: str, body: dict[str, Any]
) -> Discovery:
    object_id = _safe(key)
    unique = f"{node}_{object_id}"
    config = {"unique_id": unique, "object_id": unique, **body}
    return Discovery(f"{ha.discovery_prefix}/{component}/{node}/{object_id}/config", config)


def _bay(
    site: SiteConfig,
    shed: str,
    bay: str,
    node: str,
    ha: HomeAssistantConfig,
    common: dict[str, Any],
) -> list[Discovery]:
    topic = sensor_topic(site.site, shed, bay)
    out = [
        _entity(
            ha,
            "sensor",
            node,
            f"{bay}_{key}",
            {
                "name": f"Bay {bay} {name}",
                "state_topic": topic,
                "value_template": f"{{{{ value_json.{field} }}}}",
                "device_class": device_class,
                "unit_of_measurement": unit,
                "state_class": "measurement",
                **common,
            },
        )
        for key, name, field, device_class, unit in BAY_SENSORS
    ]
    hot = f"{{{{ 'ON' if value_json.temperature_c > {ha.max_temperature_c:g} else 'OFF' }}}}"
    out.append(
        _entity(
            ha,
            "binary_sensor",
            node,
            f"{bay}_overheating",
            {
                "name": f"Bay {bay} overheating",
                "state_topic": topic,
                "value_template": hot,
                "device_class": "heat",
                **common,
            },
        )
    )
    return out


def _fire_alarm(
    site: SiteConfig, cam: CameraConfig, node: str, ha: HomeAssistantConfig, common: dict[str, Any]
) -> Discovery:
    # The device's shed events carry every shed camera of the box: keep the state for others.
    template = (
        f"{{% if value_json.camera == '{cam.id}' %}}"
        "{{ 'ON' if value_json.level == 'alarm' and value_json.phase != 'end' else 'OFF' }}"
        "{% else %}{{ 'ON' if this.state == 'on' else 'OFF' }}{% endif %}"
    )
    return _entity(
        ha,
        "binary_sensor",
        node,
        "fire_alarm",
        {
            "name": "Fire alarm",
            "state_topic": event_topic(site.site, site.device, EventKind.SHED),
            "value_template": template,
            "device_class": "smoke",
            **common,
        },
    )


class _Publisher(Protocol):
    def wait_connected(self, timeout: float) -> bool: ...

    def publish_wait(
        self, topic: str, payload: bytes, qos: int = 1, retain: bool = False, timeout: float = 5.0
    ) -> bool: ...


def publish_discovery(client: _Publisher, site: SiteConfig, timeout: float = 60.0) -> int:
    """Publish every discovery message retained, once connected; the number acknowledged."""
    messages = discovery_messages(site)
    if not messages or not client.wait_connected(timeout):
        if messages:
            log.warning("home assistant discovery not published: no broker within %g s", timeout)
        return 0
    done = sum(client.publish_wait(m.topic, m.payload, qos=1, retain=True) for m in messages)
    if done < len(messages):
        log.warning(
            "home assistant discovery: %d of %d refused", len(messages) - done, len(messages)
        )
    return done


def start_discovery(client: _Publisher, site: SiteConfig) -> threading.Thread | None:
    """In the agent: publish in the background once the broker is reached (opt-in sites)."""
    if site.home_assistant is None:
        return None
    thread = threading.Thread(
        target=publish_discovery, args=(client, site), name="ha-discovery", daemon=True
    )
    thread.start()
    return thread
