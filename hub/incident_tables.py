"""Incident tables, on the hub's :class:`~ringwatch.hub.tables.Base` (migration 0002).

- :class:`Incident`: one thing people act on (a watch-listed person at a site, an intrusion,
  a shed alert, a device offline...), its colour/level, status and human decision.
- :class:`IncidentPoint`: its trajectory and evidence: each sighting or event it absorbed,
  and identified persons linked to an intrusion or loitering alert.
- :class:`IncidentStage`: the response stages with their deadlines, who did each and when,
  and when a missed one escalated.
- :class:`Delivery` and :class:`DeliveryAttempt`: every routed alert (MQTT topic, webhook,
  SSE stream) and every attempt to send it: a transactional outbox written with the
  incident, sent after the commit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from sqlalchemy import Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from ringwatch.hub.tables import ID, Base


class Incident(Base):
    __tablename__ = "incidents"
    __table_args__ = (
        Index("ix_incidents_corr", "kind", "site_id", "key", "last_seen"),
        Index("ix_incidents_created", "created_at"),
    )
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    kind: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(200), doc="Correlation key within kind and site.")
    site_id: Mapped[str] = mapped_column(String(ID), index=True)
    station_id: Mapped[str | None] = mapped_column(String(ID), index=True)
    manager_id: Mapped[str | None] = mapped_column(String(ID))
    device_id: Mapped[str | None] = mapped_column(String(ID))
    camera_id: Mapped[str | None] = mapped_column(String(ID))
    person_id: Mapped[int | None] = mapped_column(Integer, index=True)
    colour: Mapped[str | None] = mapped_column(String(16))
    level: Mapped[str | None] = mapped_column(String(16))
    ring: Mapped[str | None] = mapped_column(String(16), doc="Deepest ring seen.")
    escalating: Mapped[bool] = mapped_column(default=False)
    status: Mapped[str] = mapped_column(String(16), index=True)
    confirmed: Mapped[bool] = mapped_column(default=False)
    decided_by: Mapped[str | None] = mapped_column(String(100))
    decided_at: Mapped[dt.datetime | None]
    decision_reason: Mapped[str | None] = mapped_column(String(500))
    late: Mapped[bool] = mapped_column(default=False)
    title: Mapped[str] = mapped_column(String(200))
    first_seen: Mapped[dt.datetime]
    last_seen: Mapped[dt.datetime]
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    closed_at: Mapped[dt.datetime | None]
    detail: Mapped[dict[str, Any]]


class IncidentPoint(Base):
    __tablename__ = "incident_points"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    role: Mapped[str] = mapped_column(String(16))  # sighting | event | person
    event_id: Mapped[str | None] = mapped_column(String(36), index=True)
    sighting_id: Mapped[int | None] = mapped_column(Integer, index=True)
    person_id: Mapped[int | None] = mapped_column(Integer)
    camera_id: Mapped[str] = mapped_column(String(ID))
    ring: Mapped[str | None] = mapped_column(String(16))
    colour: Mapped[str | None] = mapped_column(String(16))
    level: Mapped[str | None] = mapped_column(String(16))
    similarity: Mapped[float | None] = mapped_column(Float)
    at: Mapped[dt.datetime]


class IncidentStage(Base):
    __tablename__ = "incident_stages"
    __table_args__ = (Index("ix_incident_stages_due", "done_at", "missed_at", "due_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int] = mapped_column(Integer)
    name: Mapped[str] = mapped_column(String(ID))
    within_s: Mapped[int] = mapped_column(Integer)
    due_at: Mapped[dt.datetime | None]
    done_at: Mapped[dt.datetime | None]
    done_by: Mapped[str | None] = mapped_column(String(100))
    note: Mapped[str | None] = mapped_column(String(500))
    missed_at: Mapped[dt.datetime | None]
    cancelled: Mapped[bool] = mapped_column(default=False)


class Delivery(Base):
    __tablename__ = "deliveries"
    __table_args__ = (Index("ix_deliveries_due", "status", "next_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    alert_id: Mapped[str] = mapped_column(String(36), index=True)
    incident_id: Mapped[str] = mapped_column(
        ForeignKey("incidents.id", ondelete="CASCADE"), index=True
    )
    reason: Mapped[str] = mapped_column(String(16))  # new|update|escalation|decision|...
    channel: Mapped[str] = mapped_column(String(16))  # mqtt|webhook|sse
    recipient_kind: Mapped[str | None] = mapped_column(String(16))
    recipient: Mapped[str | None] = mapped_column(String(ID))
    target: Mapped[str] = mapped_column(String(500))  # topic, URL, or "sse"
    payload: Mapped[dict[str, Any]]
    status: Mapped[str] = mapped_column(String(16))  # pending|sent|given_up
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_at: Mapped[dt.datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    last_error_kind: Mapped[str | None] = mapped_column(String(16))  # webhooks.ERROR_KINDS
    created_at: Mapped[dt.datetime]
    sent_at: Mapped[dt.datetime | None]


class DeliveryAttempt(Base):
    __tablename__ = "delivery_attempts"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    delivery_id: Mapped[int] = mapped_column(
        ForeignKey("deliveries.id", ondelete="CASCADE"), index=True
    )
    at: Mapped[dt.datetime]
    ok: Mapped[bool]
    status_code: Mapped[int | None] = mapped_column(Integer)
    error: Mapped[str | None] = mapped_column(String(500))
