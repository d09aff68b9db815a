"""Roles and scopes: what a user may do, and which stations and sites they may see.

- admin: everything, everywhere.
- auditor: reads everything, including the audit log; changes nothing.
- station_officer: the watch list and sightings of their stations' sites and persons.
- property_manager: events and readings of their managers' sites (sheds).
- technician: devices, cameras, events and dead letters of their sites.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub import tables as t


class Role(StrEnum):
    ADMIN = "admin"
    STATION_OFFICER = "station_officer"
    PROPERTY_MANAGER = "property_manager"
    TECHNICIAN = "technician"
    AUDITOR = "auditor"


class ScopeKind(StrEnum):
    STATION = "station"
    MANAGER = "manager"
    SITE = "site"


ALL_SEEING = frozenset({Role.ADMIN, Role.AUDITOR})


@dataclass(frozen=True, slots=True)
class Scope:
    """What one user may see; ``None`` means everything."""

    stations: frozenset[str] | None
    sites: frozenset[str] | None

    @property
    def everything(self) -> bool:
        return self.sites is None

    def sees_site(self, site_id: str) -> bool:
        return self.sites is None or site_id in self.sites

    def sees_station(self, station_id: str) -> bool:
        return self.stations is None or station_id in self.stations


def scope_of(session: Session, user: t.User) -> Scope:
    """Resolve a user's stations, managers and sites into the sites and stations they see."""
    if Role(user.role) in ALL_SEEING:
        return Scope(None, None)
    refs = session.execute(
        sa.select(t.UserScope.kind, t.UserScope.ref).where(t.UserScope.user_id == user.id)
    ).all()
    stations = frozenset(r for k, r in refs if k == ScopeKind.STATION)
    managers = frozenset(r for k, r in refs if k == ScopeKind.MANAGER)
    sites = {r for k, r in refs if k == ScopeKind.SITE}
    rows = session.execute(
        sa.select(t.Site.id).where(
            sa.or_(t.Site.station_id.in_(stations), t.Site.manager_id.in_(managers))
        )
    )
    sites.update(rows.scalars())
    return Scope(stations, frozenset(sites))
