"""Who hears about an incident, and the alerts they are sent.

Sites belong to a police station (campus and community incidents) and a property manager
(sheds); technical incidents go to the configured technicians; a missed deadline goes to the
station's supervisors. Each routed alert is written as :class:`Delivery` rows in the same
transaction as the incident change (a transactional outbox): one per recipient's MQTT alert
topic (``contract.topics.alert_topic`` carrying a ``contract.messages.RoutedAlert``), one
per matching webhook, and one for the dashboards' server-sent-events stream. The
:class:`~ringwatch.hub.webhooks.Dispatcher` sends them after the commit.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from ringwatch.contract.colours import Colour, Ring
from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import AlertLevel, RoutedAlert
from ringwatch.contract.topics import RecipientKind, alert_topic
from ringwatch.hub.i18n import incident_titles
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.incident_tables import Delivery, Incident
from ringwatch.hub.stages import CAMPUS_KINDS, TECHNICAL_KINDS, IncidentKind


class Channel(StrEnum):
    MQTT = "mqtt"
    WEBHOOK = "webhook"
    SSE = "sse"
    EMAIL = "email"  # issue 14: hub/notify.py
    GATEWAY = "gateway"


class Reason(StrEnum):
    """Why an alert is sent."""

    NEW = "new"
    UPDATE = "update"
    ESCALATION = "escalation"  # deeper ring, higher colour or level
    MISSED = "missed"  # a stage missed its deadline: to the supervisors
    CONFIRMED = "confirmed"
    REJECTED = "rejected"
    STEP = "step"
    CLOSED = "closed"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENT = "sent"
    GIVEN_UP = "given_up"


@dataclass(frozen=True, slots=True)
class Recipient:
    kind: RecipientKind
    id: str


def recipients(incident: Incident, person_station: str | None = None) -> list[Recipient]:
    """The people an incident is for (its site's station, manager, or the technicians are
    filled in by :class:`Router`, which knows the config)."""
    kind = IncidentKind(incident.kind)
    found: list[Recipient] = []
    if kind in CAMPUS_KINDS and incident.station_id is not None:
        found.append(Recipient(RecipientKind.STATION, incident.station_id))
    if kind is IncidentKind.WATCHLIST and person_station not in (None, incident.station_id):
        assert person_station is not None
        found.append(Recipient(RecipientKind.STATION, person_station))
    if kind is IncidentKind.SHED:
        if incident.manager_id is not None:
            found.append(Recipient(RecipientKind.MANAGER, incident.manager_id))
        elif incident.station_id is not None:
            found.append(Recipient(RecipientKind.STATION, incident.station_id))
    return found


def alert_body(incident: Incident, reason: Reason, alert_id: str) -> dict[str, Any]:
    """The JSON body of an alert on webhooks and the SSE stream (the incident summary)."""
    return {
        "alert_id": alert_id,
        "reason": reason.value,
        "incident_id": incident.id,
        "kind": incident.kind,
        "status": incident.status,
        "confirmed": incident.confirmed,
        "colour": incident.colour,
        "level": incident.level,
        "site": incident.site_id,
        "station": incident.station_id,
        "manager": incident.manager_id,
        "camera": incident.camera_id,
        "ring": incident.ring,
        "escalating": incident.escalating,
        "late": incident.late,
        "title": incident.title,
        "titles": incident_titles(incident),  # the title in each console language
        "first_seen": incident.first_seen.isoformat(),
        "last_seen": incident.last_seen.isoformat(),
        "created_at": incident.created_at.isoformat(),
        "detail": incident.detail,
    }


def routed_alert(
    incident: Incident, reason: Reason, alert_id: str, to: Recipient, now: dt.datetime
) -> RoutedAlert:
    """The contract message for one recipient's MQTT topic."""
    detail = {k: v for k, v in incident.detail.items() if k != "trajectory"}
    return RoutedAlert(
        alert_id=alert_id,
        incident_id=incident.id,
        recipient_kind=to.kind,
        recipient=to.id,
        kind=incident.kind,
        colour=None if incident.colour is None else Colour(incident.colour),
        level=None if incident.level is None else AlertLevel(incident.level),
        site=incident.site_id,
        ring=None if incident.ring is None else Ring(incident.ring),
        confirmed=incident.confirmed,
        title=incident.title[:200],
        created_at=now,
        detail={
            **detail,
            "reason": reason.value,
            "status": incident.status,
            "escalating": incident.escalating,
            "late": incident.late,
            "titles": incident_titles(incident),
        },
    )


class Router:
    """Writes the deliveries of one alert (call inside the incident's transaction)."""

    def __init__(self, config: IncidentsConfig) -> None:
        self.config = config

    def targets(self, incident: Incident, person_station: str | None) -> list[Recipient]:
        if IncidentKind(incident.kind) in TECHNICAL_KINDS:
            return [Recipient(RecipientKind.DEVICE_TECH, t) for t in self.config.technicians]
        return recipients(incident, person_station)

    def supervisors(self, incident: Incident) -> list[Recipient]:
        """Who a missed deadline escalates to: the station's supervisors (technical
        incidents, and sites with no station: the incident's own recipients again)."""
        if incident.station_id is None or IncidentKind(incident.kind) in TECHNICAL_KINDS:
            return self.targets(incident, None)
        names = self.config.supervisors_of(incident.station_id)
        return [Recipient(RecipientKind.STATION, name) for name in names]

    def route(
        self,
        session: Session,
        incident: Incident,
        reason: Reason,
        now: dt.datetime,
        to: list[Recipient] | None = None,
        *,
        person_station: str | None = None,
        sse_only: bool = False,
    ) -> str:
        """Queue one alert about ``incident``; returns its alert id."""
        alert_id = new_event_id()
        body = alert_body(incident, reason, alert_id)
        self._add(session, incident, reason, Channel.SSE, None, "sse", body, now, sent=True)
        if sse_only:
            return alert_id
        for recipient in to if to is not None else self.targets(incident, person_station):
            alert = routed_alert(incident, reason, alert_id, recipient, now)
            topic = alert_topic(recipient.kind, recipient.id)
            payload = alert.model_dump(mode="json", exclude_none=True)
            self._add(session, incident, reason, Channel.MQTT, recipient, topic, payload, now)
            self._contacts(session, incident, reason, recipient, body, now)  # issue 14
        for hook in self.config.webhooks:
            if hook.wants(incident.kind, incident.site_id):
                self._add(
                    session, incident, reason, Channel.WEBHOOK, None, str(hook.url), body, now
                )
        return alert_id

    def _contacts(
        self,
        session: Session,
        incident: Incident,
        reason: Reason,
        recipient: Recipient,
        body: dict[str, Any],
        now: dt.datetime,
    ) -> None:
        """Issue 14: one e-mail / gateway delivery per contact of ``recipient``."""
        from ringwatch.hub.crud import site_zone
        from ringwatch.hub.notify import contact_deliveries

        url = None if self.config.public_url is None else str(self.config.public_url)
        zone = site_zone(session, incident.site_id)
        for channel, target, payload in contact_deliveries(
            self.config.contacts, recipient.id, body, url, zone
        ):
            self._add(session, incident, reason, Channel(channel), recipient, target, payload, now)

    @staticmethod
    def _add(
        session: Session,
        incident: Incident,
        reason: Reason,
        channel: Channel,
        recipient: Recipient | None,
        target: str,
        payload: dict[str, Any],
        now: dt.datetime,
        sent: bool = False,
    ) -> None:
        session.add(
            Delivery(
                alert_id=payload.get("alert_id", ""),
                incident_id=incident.id,
                reason=reason.value,
                channel=channel.value,
                recipient_kind=None if recipient is None else recipient.kind.value,
                recipient=None if recipient is None else recipient.id,
                target=target[:500],
                payload=payload,
                status=(DeliveryStatus.SENT if sent else DeliveryStatus.PENDING).value,
                attempts=0,
                next_at=None if sent else now,
                created_at=now,
                sent_at=now if sent else None,
            )
        )
