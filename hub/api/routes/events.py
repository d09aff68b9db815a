"""Stored edge events and dead letters, scoped by site."""

from __future__ import annotations

from typing import Annotated, Any

import sqlalchemy as sa
from fastapi import APIRouter, Body, Depends, HTTPException, Path, status

from ringwatch.contract.topics import PREFIX, EventKind, TopicKind
from ringwatch.hub import tables as t
from ringwatch.hub.api.deps import (
    Caller,
    CallerDep,
    Filter,
    HubDep,
    Limit,
    Reason,
    RowId,
    SessionDep,
    forbidden,
    not_found,
    require,
)
from ringwatch.hub.api.routes.incidents import Decision
from ringwatch.hub.quarantine import FloodWatch, GuardError
from ringwatch.hub.roles import Role
from ringwatch.hub.schemas import DeadLetterPublic, EventPublic, QuarantinePublic

router = APIRouter(tags=["events"])
EventIdPath = Annotated[str, Path(max_length=64, description="An event id (UUIDv7).")]
Operator = Annotated[Caller, Depends(require(Role.ADMIN, Role.TECHNICIAN, Role.AUDITOR))]
Fixer = Annotated[Caller, Depends(require(Role.ADMIN, Role.TECHNICIAN))]

# Event kinds a role may read (absent: all). A property manager's shed may stand on a campus:
# its campus events are not theirs; a technician sees camera behaviour, not faces.
EVENT_KINDS_OF: dict[Role, frozenset[str]] = {
    Role.PROPERTY_MANAGER: frozenset({EventKind.SHED.value}),
    Role.TECHNICIAN: frozenset(k.value for k in EventKind if k is not EventKind.FACE),
}


def visible_events(query: sa.Select[Any], caller: Caller) -> sa.Select[Any]:
    """Only the events of the caller's sites and of the kinds their role may read."""
    kinds = EVENT_KINDS_OF.get(caller.role)
    if kinds is not None:
        query = query.where(t.Event.kind.in_(sorted(kinds)))
    if caller.scope.sites is not None:
        query = query.where(t.Event.site_id.in_(caller.scope.sites))
    return query


def may_see_event(caller: Caller, row: t.Event) -> bool:
    kinds = EVENT_KINDS_OF.get(caller.role)
    return (kinds is None or row.kind in kinds) and caller.scope.sees_site(row.site_id)


def visible_dead_letters(query: sa.Select[Any], caller: Caller) -> sa.Select[Any]:
    """Dead letters on topics of the caller's sites (a topic names its site; one that does
    not parse is no site's: admins and auditors only), without the event kinds their role
    may not read (a technician sees no face events, even stripped)."""
    kinds = EVENT_KINDS_OF.get(caller.role)
    if kinds is not None:
        hidden = [k.value for k in EventKind if k.value not in kinds]
        for kind in hidden:
            query = query.where(sa.not_(t.DeadLetter.topic.like(f"{PREFIX}/events/%/{kind}")))
    if caller.scope.sites is not None:
        patterns = [
            f"{PREFIX}/{kind.value}/{_like_literal(site)}/%"
            for site in sorted(caller.scope.sites)
            for kind in TopicKind
        ]
        query = query.where(
            sa.or_(sa.false(), *(t.DeadLetter.topic.like(p, escape="\\") for p in patterns))
        )
    return query


def _like_literal(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


@router.get("/events")
def list_events(
    session: SessionDep,
    caller: CallerDep,
    site_id: Filter = None,
    kind: Filter = None,
    limit: Limit = 200,
) -> list[EventPublic]:
    query = visible_events(sa.select(t.Event), caller)
    query = query.order_by(t.Event.captured_at.desc(), t.Event.id.desc())
    if site_id is not None:
        query = query.where(t.Event.site_id == site_id)
    if kind is not None:
        query = query.where(t.Event.kind == kind)
    rows = session.scalars(query.limit(limit))
    return [EventPublic.model_validate(r) for r in rows]


@router.get("/events/{event_id}")
def read_event(session: SessionDep, caller: CallerDep, event_id: EventIdPath) -> EventPublic:
    row = session.get(t.Event, event_id)
    if row is None:
        raise not_found(f"event {event_id}")
    if not may_see_event(caller, row):
        raise forbidden(f"event {event_id}")
    return EventPublic.model_validate(row)


@router.get("/dead-letters")
def list_dead_letters(
    session: SessionDep, caller: Operator, reason: Filter = None, limit: Limit = 200
) -> list[DeadLetterPublic]:
    """Messages the hub could not take (embeddings and crops stripped), newest first."""
    query = visible_dead_letters(sa.select(t.DeadLetter), caller)
    query = query.order_by(t.DeadLetter.id.desc())
    if reason is not None:
        query = query.where(t.DeadLetter.reason == reason)
    rows = session.scalars(query.limit(limit))
    return [DeadLetterPublic.model_validate(r) for r in rows]


@router.get("/quarantines")
def list_quarantines(
    session: SessionDep, caller: Operator, active: bool = False, limit: Limit = 200
) -> list[QuarantinePublic]:
    """Logins shut out for flooding malformed messages (hub/quarantine.py), newest first;
    ``active``: only those not lifted yet. Scoped by site."""
    query = sa.select(t.DeviceQuarantine).order_by(t.DeviceQuarantine.id.desc())
    if active:
        query = query.where(t.DeviceQuarantine.lifted_at.is_(None))
    if caller.scope.sites is not None:
        query = query.where(t.DeviceQuarantine.site_id.in_(caller.scope.sites))
    return [QuarantinePublic.model_validate(r) for r in session.scalars(query.limit(limit))]


@router.post("/quarantines/{quarantine_id}/lift")
def lift_quarantine(
    hub: HubDep,
    session: SessionDep,
    caller: Fixer,
    quarantine_id: RowId,
    body: Annotated[Decision | None, Body()] = None,
    reason: Reason = None,
) -> QuarantinePublic:
    """Readmit a quarantined login now (at the broker too): an admin, or a technician of
    its site who has seen to the box; audited with the reason (body or ``X-Reason``)."""
    row = session.get(t.DeviceQuarantine, quarantine_id)
    if row is None or not caller.scope.sees_site(row.site_id):
        raise not_found(f"quarantine {quarantine_id}")
    session.rollback()  # the lift writes in its own transactions
    # A hub without ingest (or whose guard is off) can still lift a hub-only quarantine;
    # one banned at the broker needs the guard login (GuardError: 502 saying so).
    watch = hub.flood or FloodWatch(hub.sessions, hub.clock, hub.config.ingest.flood)
    try:
        why = (body.reason if body else None) or reason or "lifted by hand"
        lifted = watch.lift(quarantine_id, caller.actor, why)
    except GuardError as exc:
        raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
    if lifted is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"quarantine {quarantine_id}: lifted already")
    return QuarantinePublic.model_validate(lifted)
