"""API payloads: Create / Update / Public splits per resource (no ORM objects leave the API)."""

from __future__ import annotations

import datetime as dt
import unicodedata
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    model_validator,
)

from ringwatch.contract.colours import Ring, Tier
from ringwatch.contract.zones import Ident
from ringwatch.hub.roles import Role
from ringwatch.hub.timezones import TimeZone

_BIDI_CONTROLS = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069")


def _printable(value: str) -> str:
    """Refuse control characters (a NUL, an escape sequence, a newline forging a log line,
    a right-to-left override that reverses what a name shows)."""
    for i, char in enumerate(value):
        if unicodedata.category(char) in ("Cc", "Zl", "Zp") or char in _BIDI_CONTROLS:
            raise ValueError(f"control character U+{ord(char):04X} at position {i}")
    return value


Label = Annotated[str, AfterValidator(_printable)]
"""A display name: any printable text (length is bounded per field)."""


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Out(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class Token(_Out):
    access_token: str
    token_type: str = "bearer"


class UserCreate(_In):
    username: str = Field(min_length=2, max_length=100, pattern=r"^[A-Za-z0-9_.@-]+$")
    password: str = Field(min_length=8, max_length=200)
    full_name: Label = Field(default="", max_length=200)
    role: Role
    stations: list[Ident] = Field(default_factory=list)
    managers: list[Ident] = Field(default_factory=list)
    sites: list[Ident] = Field(default_factory=list)


class UserPublic(_Out):
    id: int
    username: str
    full_name: str
    role: Role
    active: bool
    stations: list[str] = Field(default_factory=list)
    managers: list[str] = Field(default_factory=list)
    sites: list[str] = Field(default_factory=list)


class StationIn(_In):
    id: Ident
    name: Label = Field(min_length=1, max_length=200)
    kind: str = Field(default="campus", pattern="^(campus|community)$")


class StationPublic(_Out):
    id: str
    name: str
    kind: str


class ManagerIn(_In):
    id: Ident
    name: Label = Field(min_length=1, max_length=200)


class ManagerPublic(_Out):
    id: str
    name: str


class SiteIn(_In):
    id: Ident
    name: Label = Field(min_length=1, max_length=200)
    station_id: Ident | None = None
    manager_id: Ident | None = None
    time_zone: TimeZone = "Asia/Shanghai"


class SiteUpdate(_In):
    name: Label | None = Field(default=None, min_length=1, max_length=200)
    station_id: Ident | None = None
    manager_id: Ident | None = None
    time_zone: TimeZone | None = None


class SitePublic(_Out):
    id: str
    name: str
    station_id: str | None
    manager_id: str | None
    time_zone: str


class DeviceIn(_In):
    id: Ident
    name: Label = Field(default="", max_length=200)


class DevicePublic(_Out):
    site_id: str
    id: str
    name: str
    agent_version: str | None
    last_seen_at: dt.datetime | None
    last_health: dict[str, Any] | None


class CameraIn(_In):
    id: Ident
    device_id: Ident
    name: Label = Field(default="", max_length=200)
    role: str = Field(default="campus", pattern="^(campus|shed)$")
    default_ring: Ring | None = None
    shed: Ident | None = None


class CameraUpdate(_In):
    name: Label | None = Field(default=None, max_length=200)
    default_ring: Ring | None = None
    shed: Ident | None = None


class CameraPublic(_Out):
    site_id: str
    id: str
    device_id: str
    name: str
    role: str
    default_ring: str | None
    shed: str | None


# Required watch-list text: surrounding whitespace stripped, then non-empty (min_length).
Name = Annotated[
    str,
    StringConstraints(strip_whitespace=True, min_length=1, max_length=200),
    AfterValidator(_printable),
]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=2000)]
CaseRef = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
LegalBasis = Annotated[str, StringConstraints(strip_whitespace=True, min_length=3, max_length=500)]


def review_due_error(due: dt.date, today: dt.date) -> str | None:
    """Why ``due`` is no review date for an entry written ``today`` (None: it is one). The
    hub's clock gives ``today``, so the check runs where the clock is (crud)."""
    if due <= today:
        return f"review_due {due} must be after today ({today})"
    latest = _add_year(today)
    if due > latest:
        return f"review_due {due} is more than 12 months ahead (latest {latest})"
    return None


def _add_year(day: dt.date) -> dt.date:
    try:
        return day.replace(year=day.year + 1)
    except ValueError:  # 29 February
        return day.replace(year=day.year + 1, day=28)


class PersonCreate(_In):
    """A watch-list entry. There are no fields for ethnicity, religion, politics or health.
    Reason, case reference, legal basis and responsible station are required and non-blank;
    the review date is checked against the hub's clock (:func:`review_due_error`)."""

    display_name: Name
    tier: Tier = Field(description="red, orange or yellow (green = delisted).")
    reason: Reason
    case_reference: CaseRef
    legal_basis: LegalBasis
    station_id: Ident
    review_due: dt.date = Field(description="After today, at most 12 months ahead.")


class PersonUpdate(_In):
    display_name: Name | None = None
    tier: Tier | None = None
    reason: Reason | None = None
    case_reference: CaseRef | None = None
    legal_basis: LegalBasis | None = None
    review_due: dt.date | None = Field(
        default=None, description="A review: after today, at most 12 months ahead."
    )
    why: str = Field(min_length=3, max_length=500, description="Why the change (audited).")

    @model_validator(mode="after")
    def _no_required_field_cleared(self) -> PersonUpdate:
        cleared = sorted(k for k in self.model_fields_set if getattr(self, k) is None)
        if cleared:
            raise ValueError(f"required fields cannot be cleared: {', '.join(cleared)}")
        return self


class PersonPublic(_Out):
    id: int
    display_name: str
    tier: Tier
    reason: str
    case_reference: str
    legal_basis: str
    station_id: str
    created_by: str
    created_at: dt.datetime
    updated_at: dt.datetime
    review_due: dt.date
    matchable: bool = Field(
        description="Not delisted, review not past due, and at least one enrolled photo."
    )
    templates: int = 0


class TemplatePublic(_Out):
    id: int
    person_id: int
    quality: float
    photo_sha256: str
    created_by: str
    created_at: dt.datetime


class SightingPublic(_Out):
    id: int
    event_id: str
    person_id: int
    template_id: int | None
    site_id: str
    device_id: str
    camera_id: str
    ring: str | None
    zone_id: str | None
    track_id: int | None
    captured_at: dt.datetime
    similarity: float
    threshold: float
    rank: int
    has_crop: bool


class EventPublic(_Out):
    id: str
    site_id: str
    device_id: str
    camera_id: str
    kind: str
    phase: str
    ring: str | None
    zone_id: str | None
    track_id: int | None
    level: str | None
    captured_at: dt.datetime
    received_at: dt.datetime
    payload: dict[str, Any]


class AuditPublic(_Out):
    id: int
    at: dt.datetime
    actor: str
    role: str
    action: str
    entity: str
    entity_id: str | None
    reason: str | None
    detail: dict[str, Any]


class DeadLetterPublic(_Out):
    id: int
    received_at: dt.datetime
    topic: str
    reason: str
    detail: str
    size: int
    payload: str


class QuarantinePublic(_Out):
    """A broker login shut out for flooding malformed messages (hub/quarantine.py)."""

    id: int
    login: str
    site_id: str
    device_id: str
    started_at: dt.datetime
    until: dt.datetime
    bad_count: int
    window_s: int
    reasons: str
    broker_ban: bool
    broker_error: str | None
    lifted_at: dt.datetime | None
    lifted_by: str | None


class IngestStatus(_Out):
    running: bool
    connected: bool
    received: int
    stored: int
    duplicates: int
    dead_letters: int
    sightings: int
    receipts_sent: int
    errors: int
    broker_refused: str | None = None  # the broker refused the hub's login; not retrying
    quarantines: int = 0  # logins quarantined for floods by this worker since it started
    flood_guard: str | None = None  # ingest.flood.at_broker: "connected" or why not


class WorkerPublic(_Out):
    """One hub worker's last heartbeat (hub/workers.py)."""

    name: str
    instance: str
    started_at: str
    last_heartbeat: str
    heartbeat_age_s: float
    state: str
    lag_s: float | None
    queued: int
    events: int
    events_per_s: float


class HealthStatus(_Out):
    """What anyone may know without logging in: up or not."""

    status: str


class HealthPublic(_Out):
    status: str
    database: str
    migration: str | None
    broker_url: str | None
    ingest: IngestStatus
    templates_indexed: int | None = None
    workers: list[WorkerPublic] = []
