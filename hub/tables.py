"""The hub's tables (SQLAlchemy 2 declarative). Schema changes go through Alembic
(``hub/migrations``); ``ringwatch hub migrate`` applies them.

Times are stored as naive UTC and read back as aware UTC (:class:`UtcDateTime`), so SQLite
and PostgreSQL behave alike. Person records have no field for ethnicity, religion, political
opinion or health, on purpose.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Date,
    DateTime,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

ID = 64  # length of an Ident (contract)


class UtcDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes in, aware UTC datetimes out, on every backend."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("UtcDateTime needs an aware datetime")
        return value.astimezone(dt.UTC).replace(tzinfo=None)

    def process_result_value(
        self, value: dt.datetime | None, dialect: Dialect
    ) -> dt.datetime | None:
        return None if value is None else value.replace(tzinfo=dt.UTC)


NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {dt.datetime: UtcDateTime, dict[str, Any]: JSON}


class Station(Base):
    """A police station that receives campus alerts."""

    __tablename__ = "stations"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    kind: Mapped[str] = mapped_column(String(16), default="campus")


class Manager(Base):
    """A property manager who looks after e-bike sheds."""

    __tablename__ = "managers"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))


class Site(Base):
    """A campus or shed site; it belongs to a police station and/or a property manager."""

    __tablename__ = "sites"
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(200))
    station_id: Mapped[str | None] = mapped_column(ForeignKey("stations.id"), index=True)
    manager_id: Mapped[str | None] = mapped_column(ForeignKey("managers.id"), index=True)
    # IANA zone every time of this site is shown in (the console; issue 13).
    time_zone: Mapped[str] = mapped_column(
        String(64), default="Asia/Shanghai", server_default="Asia/Shanghai"
    )


class Device(Base):
    """An edge box, known by (site, device) as in its topics."""

    __tablename__ = "devices"
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    name: Mapped[str] = mapped_column(String(200), default="")
    agent_version: Mapped[str | None] = mapped_column(String(64))
    last_seen_at: Mapped[dt.datetime | None]
    last_health: Mapped[dict[str, Any] | None]
    clock_skew_s: Mapped[float | None] = mapped_column(
        doc="Edge clock minus hub clock at its latest heartbeat (s; 0004_i12)."
    )


class Camera(Base):
    """A camera attached to a device; ``default_ring`` colours faces seen outside zones."""

    __tablename__ = "cameras"
    __table_args__ = (
        ForeignKeyConstraint(["site_id", "device_id"], ["devices.site_id", "devices.id"]),
    )
    site_id: Mapped[str] = mapped_column(ForeignKey("sites.id"), primary_key=True)
    id: Mapped[str] = mapped_column(String(ID), primary_key=True)
    device_id: Mapped[str] = mapped_column(String(ID))
    name: Mapped[str] = mapped_column(String(200), default="")
    role: Mapped[str] = mapped_column(String(16), default="campus")
    default_ring: Mapped[str | None] = mapped_column(String(16))
    shed: Mapped[str | None] = mapped_column(String(ID))


class User(Base):
    """A person who logs in; ``role`` decides what they may do, scopes decide where."""

    __tablename__ = "users"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(100), unique=True)
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(32))
    active: Mapped[bool] = mapped_column(default=True)
    created_at: Mapped[dt.datetime]


class UserScope(Base):
    """One station, property manager or site a user is scoped to."""

    __tablename__ = "user_scopes"
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # station|manager|site
    ref: Mapped[str] = mapped_column(String(ID), primary_key=True)


class Person(Base):
    """A watch-list entry. Tier green = delisted. Past ``review_due`` = not matched."""

    __tablename__ = "persons"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    display_name: Mapped[str] = mapped_column(String(200))
    tier: Mapped[str] = mapped_column(String(16), index=True)
    reason: Mapped[str] = mapped_column(Text)
    case_reference: Mapped[str] = mapped_column(String(100))
    legal_basis: Mapped[str] = mapped_column(String(500))
    station_id: Mapped[str] = mapped_column(ForeignKey("stations.id"), index=True)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]
    updated_at: Mapped[dt.datetime]
    review_due: Mapped[dt.date] = mapped_column(Date)


class Template(Base):
    """One enrolled face: the embedding and the face crop, both encrypted at rest."""

    __tablename__ = "templates"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id", ondelete="CASCADE"), index=True)
    embedding_enc: Mapped[bytes] = mapped_column(LargeBinary)
    crop_enc: Mapped[bytes] = mapped_column(LargeBinary)
    quality: Mapped[float] = mapped_column(Float)
    photo_sha256: Mapped[str] = mapped_column(String(64))
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]


class Event(Base):
    """One edge event, stored once by its id. Face events keep no embedding or crop; the
    crop of a matching face lives on its sighting."""

    __tablename__ = "events"
    __table_args__ = (Index("ix_events_site_captured", "site_id", "captured_at"),)
    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    site_id: Mapped[str] = mapped_column(String(ID))
    device_id: Mapped[str] = mapped_column(String(ID))
    camera_id: Mapped[str] = mapped_column(String(ID))
    kind: Mapped[str] = mapped_column(String(32), index=True)
    phase: Mapped[str] = mapped_column(String(16))
    ring: Mapped[str | None] = mapped_column(String(16))
    zone_id: Mapped[str | None] = mapped_column(String(ID))
    track_id: Mapped[int | None]
    level: Mapped[str | None] = mapped_column(String(16))
    captured_at: Mapped[dt.datetime]
    received_at: Mapped[dt.datetime] = mapped_column(index=True)  # retention (0004_i12)
    snapshot_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    payload: Mapped[dict[str, Any]]


class Sighting(Base):
    """A face event that matched a watch-listed person."""

    __tablename__ = "sightings"
    __table_args__ = (UniqueConstraint("event_id", "person_id"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    event_id: Mapped[str] = mapped_column(ForeignKey("events.id", ondelete="CASCADE"))
    person_id: Mapped[int] = mapped_column(ForeignKey("persons.id"), index=True)
    template_id: Mapped[int | None] = mapped_column(Integer)
    site_id: Mapped[str] = mapped_column(String(ID), index=True)
    device_id: Mapped[str] = mapped_column(String(ID))
    camera_id: Mapped[str] = mapped_column(String(ID))
    ring: Mapped[str | None] = mapped_column(String(16))
    zone_id: Mapped[str | None] = mapped_column(String(ID))
    track_id: Mapped[int | None]
    captured_at: Mapped[dt.datetime]
    similarity: Mapped[float] = mapped_column(Float)
    threshold: Mapped[float] = mapped_column(Float)
    rank: Mapped[int] = mapped_column(Integer)
    crop_jpeg: Mapped[bytes | None] = mapped_column(LargeBinary)
    created_at: Mapped[dt.datetime]


class DeadLetter(Base):
    """A message the hub could not take, with why; biometric fields are stripped."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    received_at: Mapped[dt.datetime] = mapped_column(index=True)
    topic: Mapped[str] = mapped_column(String(300))
    reason: Mapped[str] = mapped_column(String(40), index=True)
    detail: Mapped[str] = mapped_column(Text)
    size: Mapped[int] = mapped_column(Integer)
    payload: Mapped[str] = mapped_column(Text)


class DeviceQuarantine(Base):
    """A broker login that flooded the hub with malformed messages, shut out for a while
    (hub/quarantine.py; 0006_i11). Active while ``lifted_at`` is unset."""

    __tablename__ = "device_quarantines"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    login: Mapped[str] = mapped_column(String(ID), index=True)
    site_id: Mapped[str] = mapped_column(String(ID))
    device_id: Mapped[str] = mapped_column(String(ID))
    started_at: Mapped[dt.datetime] = mapped_column(index=True)
    until: Mapped[dt.datetime]
    bad_count: Mapped[int] = mapped_column(Integer)
    window_s: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[str] = mapped_column(String(500))
    broker_ban: Mapped[bool] = mapped_column(doc="The broker was told to refuse the login.")
    broker_client: Mapped[str | None] = mapped_column(
        String(16),
        doc="What the ban did at the broker: created (a ban client, deleted on lift),"
        " disabled (the operator's own client, enabled on lift), was_disabled (left),"
        " unknown (the command timed out: lifting asks the broker); unset: none sent.",
    )
    broker_error: Mapped[str | None] = mapped_column(String(500))
    lifted_at: Mapped[dt.datetime | None] = mapped_column(index=True)
    lifted_by: Mapped[str | None] = mapped_column(String(200))


class LoginThrottleEntry(Base):
    """Failed logins of one user name (``user:NAME``) or one client address
    (``client:ADDR``) in the current window, shared by every hub worker (0005_i11)."""

    __tablename__ = "login_throttle"
    key: Mapped[str] = mapped_column(String(300), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    window_start: Mapped[dt.datetime] = mapped_column(index=True)
    locked_until: Mapped[dt.datetime | None]


class SensorReading(Base):
    """A shed bay's charger reading, kept for charts."""

    __tablename__ = "sensor_readings"
    __table_args__ = (Index("ix_sensor_site_shed_bay", "site_id", "shed", "bay", "measured_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    site_id: Mapped[str] = mapped_column(String(ID))
    shed: Mapped[str] = mapped_column(String(ID))
    bay: Mapped[str] = mapped_column(String(ID))
    current_a: Mapped[float] = mapped_column(Float)
    voltage_v: Mapped[float] = mapped_column(Float)
    temperature_c: Mapped[float] = mapped_column(Float)
    measured_at: Mapped[dt.datetime]


class AuditEntry(Base):
    """Append-only (a database trigger refuses UPDATE and DELETE): who did what, when, why."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[dt.datetime] = mapped_column(index=True)
    actor: Mapped[str] = mapped_column(String(100))
    role: Mapped[str] = mapped_column(String(32))
    action: Mapped[str] = mapped_column(String(16), index=True)
    entity: Mapped[str] = mapped_column(String(32))
    entity_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(String(500))
    detail: Mapped[dict[str, Any]]


class Counter(Base):
    """Named counters shared by all hub workers (e.g. the registry generation)."""

    __tablename__ = "counters"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(Integer, default=0)


class TemplateSource(Base):
    """A template that is not an uploaded photo: a confirmed live shot (the face crop of a
    sighting), with who confirmed it and the consent they recorded (issue 16)."""

    __tablename__ = "template_sources"
    template_id: Mapped[int] = mapped_column(
        ForeignKey("templates.id", ondelete="CASCADE"), primary_key=True
    )
    sighting_id: Mapped[int] = mapped_column(Integer, index=True)
    consent: Mapped[str] = mapped_column(Text)
    confirmed_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[dt.datetime]


class RegistryChange(Base):
    """One registry change (a person's entry or templates), numbered by the registry
    generation it made: hub workers re-read only the persons changed since they last
    looked (issue 17)."""

    __tablename__ = "registry_changes"
    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    person_id: Mapped[int | None] = mapped_column(Integer)
    at: Mapped[dt.datetime]
