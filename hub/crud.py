"""Every write to the database goes through here, with its audit entry where one is due.

Functions take an open session and never commit: the caller owns the transaction, so a
change and its audit entry are committed together or not at all.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.colours import Tier
from ringwatch.errors import InputError
from ringwatch.hub import schemas as s
from ringwatch.hub import tables as t
from ringwatch.hub.inventory import HubConfig, SiteEntry
from ringwatch.hub.matching import bump_generation
from ringwatch.hub.roles import ScopeKind
from ringwatch.hub.security import hash_password
from ringwatch.hub.timezones import DEFAULT_ZONE


@dataclass(frozen=True, slots=True)
class Actor:
    """Who does something: a user, or the hub itself (``role`` = ``system``)."""

    name: str
    role: str


INGEST = Actor("hub-ingest", "system")
CONFIG = Actor("hub-config", "system")


def audit(
    session: Session,
    actor: Actor,
    action: str,
    entity: str,
    entity_id: object | None,
    at: dt.datetime,
    reason: str | None = None,
    **detail: Any,
) -> None:
    """Append one audit entry (the table refuses UPDATE and DELETE)."""
    session.add(
        t.AuditEntry(
            at=at,
            actor=actor.name,
            role=actor.role,
            action=action,
            entity=entity,
            entity_id=None if entity_id is None else str(entity_id),
            reason=reason,
            detail=detail,
        )
    )


# --- inventory -------------------------------------------------------------------------


def apply_config(session: Session, config: HubConfig) -> None:
    """Upsert the stations, managers, sites, devices and cameras named in the config file.
    Under an advisory lock on PostgreSQL: workers starting together load it one at a time
    (``merge`` is select-then-insert)."""
    from ringwatch.hub.workers import lock_keys

    lock_keys(session, ["ringwatch:inventory"])
    for station in config.stations:
        session.merge(t.Station(id=station.id, name=station.name, kind=station.kind))
    for manager in config.managers:
        session.merge(t.Manager(id=manager.id, name=manager.name))
    session.flush()
    for site in config.sites:
        _apply_site(session, site)


def _apply_site(session: Session, site: SiteEntry) -> None:
    session.merge(
        t.Site(
            id=site.id,
            name=site.name,
            station_id=site.station,
            manager_id=site.manager,
            time_zone=site.time_zone,
        )
    )
    session.flush()
    for device in site.devices:
        existing = session.get(t.Device, (site.id, device.id))
        if existing is None:
            session.add(t.Device(site_id=site.id, id=device.id, name=device.name))
        else:
            existing.name = device.name
        session.flush()
        for cam in device.cameras:
            session.merge(
                t.Camera(
                    site_id=site.id,
                    id=cam.id,
                    device_id=device.id,
                    name=cam.name,
                    role=cam.role,
                    default_ring=None if cam.default_ring is None else cam.default_ring.value,
                    shed=cam.shed,
                )
            )


def add_station(session: Session, data: s.StationIn) -> t.Station:
    row = t.Station(**data.model_dump())
    session.add(row)
    return row


def add_manager(session: Session, data: s.ManagerIn) -> t.Manager:
    row = t.Manager(**data.model_dump())
    session.add(row)
    return row


def add_site(session: Session, data: s.SiteIn) -> t.Site:
    row = t.Site(**data.model_dump())
    session.add(row)
    return row


def site_zone(session: Session, site_id: str) -> str:
    """The IANA zone the times of ``site_id`` are read in (the default for an unknown site)."""
    site = session.get(t.Site, site_id)
    return DEFAULT_ZONE if site is None else site.time_zone


def update_site(site: t.Site, data: s.SiteUpdate) -> t.Site:
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(site, key, value)
    return site


def add_device(session: Session, site_id: str, data: s.DeviceIn) -> t.Device:
    row = t.Device(site_id=site_id, **data.model_dump())
    session.add(row)
    return row


def add_camera(session: Session, site_id: str, data: s.CameraIn) -> t.Camera:
    values = data.model_dump()
    values["default_ring"] = None if data.default_ring is None else data.default_ring.value
    row = t.Camera(site_id=site_id, **values)
    session.add(row)
    return row


def update_camera(camera: t.Camera, data: s.CameraUpdate) -> t.Camera:
    for key, value in data.model_dump(exclude_unset=True).items():
        setattr(camera, key, value.value if hasattr(value, "value") else value)
    return camera


# --- users -----------------------------------------------------------------------------


def create_user(session: Session, data: s.UserCreate, now: dt.datetime) -> t.User:
    user = t.User(
        username=data.username,
        full_name=data.full_name,
        password_hash=hash_password(data.password),
        role=data.role.value,
        active=True,
        created_at=now,
    )
    session.add(user)
    session.flush()
    scopes = [
        *((ScopeKind.STATION, ref) for ref in data.stations),
        *((ScopeKind.MANAGER, ref) for ref in data.managers),
        *((ScopeKind.SITE, ref) for ref in data.sites),
    ]
    for kind, ref in scopes:
        session.add(t.UserScope(user_id=user.id, kind=kind.value, ref=ref))
    return user


# --- watch list ------------------------------------------------------------------------


def check_review_due(due: dt.date, now: dt.datetime) -> None:
    """A watch-list entry's review date: after today, at most 12 months ahead (hub clock)."""
    problem = s.review_due_error(due, now.date())
    if problem is not None:
        raise InputError(problem)


def create_person(
    session: Session, data: s.PersonCreate, actor: Actor, now: dt.datetime
) -> t.Person:
    check_review_due(data.review_due, now)
    person = t.Person(
        **data.model_dump(exclude={"tier"}),
        tier=data.tier.value,
        created_by=actor.name,
        created_at=now,
        updated_at=now,
    )
    session.add(person)
    session.flush()
    audit(session, actor, "create", "person", person.id, now, None, tier=data.tier.value)
    bump_generation(session, person.id)
    return person


def update_person(
    session: Session, person: t.Person, data: s.PersonUpdate, actor: Actor, now: dt.datetime
) -> t.Person:
    if data.review_due is not None:
        check_review_due(data.review_due, now)
    changes = data.model_dump(exclude_unset=True, exclude={"why"})
    before = {key: _plain(getattr(person, key)) for key in changes}
    for key, value in changes.items():
        setattr(person, key, value.value if isinstance(value, Tier) else value)
    person.updated_at = now
    action = "delist" if changes.get("tier") is Tier.GREEN else "update"
    after = {key: _plain(getattr(person, key)) for key in changes}
    audit(session, actor, action, "person", person.id, now, data.why, before=before, after=after)
    bump_generation(session, person.id)
    return person


def add_template(
    session: Session,
    person: t.Person,
    embedding_enc: bytes,
    crop_enc: bytes,
    quality: float,
    photo_sha256: str,
    actor: Actor,
    now: dt.datetime,
) -> t.Template:
    row = t.Template(
        person_id=person.id,
        embedding_enc=embedding_enc,
        crop_enc=crop_enc,
        quality=quality,
        photo_sha256=photo_sha256,
        created_by=actor.name,
        created_at=now,
    )
    session.add(row)
    session.flush()
    audit(
        session, actor, "enrol", "template", row.id, now, None, person_id=person.id, quality=quality
    )
    bump_generation(session, person.id)
    return row


def delete_template(
    session: Session, template: t.Template, actor: Actor, now: dt.datetime, why: str | None
) -> None:
    audit(session, actor, "delete", "template", template.id, now, why, person_id=template.person_id)
    session.delete(template)
    bump_generation(session, template.person_id)


def _plain(value: object) -> object:
    return value.isoformat() if isinstance(value, dt.date) else value


# --- ingest ----------------------------------------------------------------------------


def add_dead_letter(
    session: Session,
    topic: str,
    reason: str,
    detail: str,
    size: int,
    payload: str,
    now: dt.datetime,
) -> None:
    session.add(
        t.DeadLetter(
            received_at=now,
            topic=topic[:300],
            reason=reason,
            detail=detail[:4000],
            size=size,
            payload=payload,
        )
    )


SKEW_RESET = dt.timedelta(minutes=10)


def record_health(
    session: Session,
    device: t.Device,
    health: dict[str, Any],
    at: dt.datetime,
    now: dt.datetime | None = None,
) -> None:
    """A heartbeat sent at ``at`` (the edge's clock) received at ``now`` (the hub's):
    liveness uses the hub's clock, and ``at - now`` estimates the edge's clock skew. Transit
    and a replayed backlog only make that sample smaller, so the largest sample since the
    device was last silent for ``SKEW_RESET`` is kept."""
    if now is None:
        device.last_seen_at = at
        device.last_health = health
        return
    sample = round((at - now).total_seconds(), 3)
    previous = device.last_seen_at
    if (
        device.clock_skew_s is None
        or previous is None
        or now - previous > SKEW_RESET
        or sample > device.clock_skew_s
    ):
        device.clock_skew_s = sample
    device.last_seen_at = now
    device.last_health = health
    version = health.get("agent_version")
    if isinstance(version, str):
        device.agent_version = version


def existing_event_ids(session: Session, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(session.scalars(sa.select(t.Event.id).where(t.Event.id.in_(ids))))


def add_live_template(
    session: Session,
    person: t.Person,
    sighting: t.Sighting,
    template: tuple[bytes, bytes, float, str],
    consent: str,
    actor: Actor,
    now: dt.datetime,
) -> t.Template:
    """A confirmed live shot (the sighting's face crop) as one more template of ``person``,
    with the officer's consent recorded beside it; ``template`` is (embedding_enc, crop_enc,
    quality, crop_sha256). Audited as ``enrol_live``."""
    embedding_enc, crop_enc, quality, sha256 = template
    row = add_template(session, person, embedding_enc, crop_enc, quality, sha256, actor, now)
    session.add(
        t.TemplateSource(
            template_id=row.id,
            sighting_id=sighting.id,
            consent=consent,
            confirmed_by=actor.name,
            created_at=now,
        )
    )
    audit(
        session,
        actor,
        "enrol_live",
        "template",
        row.id,
        now,
        consent,
        person_id=person.id,
        sighting_id=sighting.id,
    )
    return row


def insert_new_events(session: Session, rows: list[dict[str, Any]]) -> set[str]:
    """Insert the ``events`` rows whose id is not stored yet; the ids it inserted.

    A row whose id is stored already (an earlier batch, or another worker a moment ago) is
    skipped, not an error: exactly-once holds because only the returned ids count as new.
    No ORM objects. PostgreSQL: one ``INSERT .. SELECT FROM unnest(arrays) ON CONFLICT DO
    NOTHING RETURNING id`` from ``json_populate_recordset`` (one statement, one text
    parameter: psycopg's Python-side handling of many-row VALUES or of array parameters
    cost more than the insert itself). SQLite: multi-row
    VALUES with the same clause. Other databases: look up, then insert."""
    if not rows:
        return set()
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return set(session.scalars(_PG_INSERT_EVENTS, _batch_json(rows)))
    table = t.Event.__table__
    assert isinstance(table, sa.Table)
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        insert = sqlite_insert(table).on_conflict_do_nothing(index_elements=["id"])
        return set(session.scalars(insert.returning(table.c.id), rows))
    known = existing_event_ids(session, [r["id"] for r in rows])
    new = [r for r in rows if r["id"] not in known]
    if new:
        session.execute(sa.insert(table), new)
    return {r["id"] for r in new}


_EVENT_COLUMNS = ", ".join(t.Event.__table__.columns.keys())
_PG_INSERT_EVENTS = sa.text(
    f"INSERT INTO events ({_EVENT_COLUMNS}) SELECT {_EVENT_COLUMNS} "
    "FROM json_populate_recordset(NULL::events, CAST(:rows AS json)) "
    "ON CONFLICT (id) DO NOTHING RETURNING id"
)


def _batch_json(rows: list[dict[str, Any]]) -> dict[str, str]:
    """The rows as one JSON array for ``json_populate_recordset``, converted as the column
    types would (naive UTC times, bytea as hex) since the JSON text bypasses them."""
    return {"rows": json.dumps([_json_row(r) for r in rows], separators=(",", ":"))}


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    out = dict(row)
    for name, value in row.items():
        if isinstance(value, dt.datetime):
            out[name] = value.astimezone(dt.UTC).replace(tzinfo=None).isoformat()
        elif isinstance(value, bytes):
            out[name] = "\\x" + value.hex()
    return out
