"""The ``incidents`` section of the hub config file: correlation windows, response stages,
station supervisors, technicians, webhooks, retry policy and retention.

Example::

    incidents:
      window_s: 600
      supervisors: {st-north: [st-north-duty-sgt]}
      technicians: [tech-team]
      webhooks:
        - {url: "https://ops.example/hooks/ringwatch", kinds: [watchlist, shed]}
      retention: {events_days: 30, incidents_days: 365, keep_confirmed: true}
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, HttpUrl

from ringwatch.contract.zones import Ident
from ringwatch.hub.notify_config import ContactConfig
from ringwatch.hub.stages import IncidentKind, StagePlans


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class WebhookConfig(_Section):
    url: HttpUrl = Field(description="Where incident alerts are POSTed as JSON.")
    kinds: list[IncidentKind] | None = Field(
        default=None, description="Incident kinds sent here (all when unset)."
    )
    sites: list[Ident] | None = Field(default=None, description="Sites sent here (all if unset).")
    secret_header: str | None = Field(
        default=None, max_length=500, description="Value of an X-Ringwatch-Token header."
    )

    def wants(self, kind: str, site: str) -> bool:
        kind_ok = self.kinds is None or kind in {k.value for k in self.kinds}
        return kind_ok and (self.sites is None or site in self.sites)


class RetryPolicy(_Section):
    """Exponential backoff for webhook deliveries: first_s, first_s*factor, ... up to max_s."""

    attempts: int = Field(default=8, ge=1, le=50, description="Attempts before giving up.")
    first_s: float = Field(default=2.0, gt=0, le=3600, description="Wait after attempt 1.")
    factor: float = Field(default=2.0, ge=1, le=10, description="Growth of the wait.")
    max_s: float = Field(default=300.0, gt=0, le=86400, description="Longest wait.")
    timeout_s: float = Field(default=5.0, gt=0, le=60, description="HTTP timeout per attempt.")

    def wait_after(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number ``attempt`` (1-based)."""
        return float(min(self.first_s * self.factor ** (attempt - 1), self.max_s))


class RetentionConfig(_Section):
    events_days: int = Field(default=30, ge=1, le=3650, description="Events, snapshots, crops.")
    incidents_days: int = Field(
        default=365, ge=1, le=36500, description="Closed or rejected incidents."
    )
    keep_confirmed: bool = Field(
        default=True, description="Confirmed incidents are kept (with their evidence)."
    )


class TechnicalConfig(_Section):
    offline_after_s: int = Field(default=300, ge=10, description="Offline longer raises one.")
    outbox_rising_samples: int = Field(
        default=3, ge=2, le=100, description="Heartbeats of a growing outbox that raise one."
    )


class IncidentsConfig(_Section):
    """Everything the incident service needs (it gets only this section)."""

    window_s: int = Field(
        default=600, ge=10, le=86400, description="Sightings this close form one incident."
    )
    link_window_s: int = Field(
        default=60, ge=0, le=3600, description="Intrusion/loitering <-> sighting link, s."
    )
    tick_s: float = Field(default=1.0, gt=0, le=60, description="Timer loop period.")
    timer_loop: bool = Field(
        default=True, description="Run the timer loop (tests with a fake clock call tick())."
    )
    stages: StagePlans = Field(default_factory=StagePlans)
    supervisors: dict[Ident, list[Ident]] = Field(
        default_factory=dict,
        description="Station -> supervisor recipients (default: '<station>-supervisors').",
    )
    technicians: list[Ident] = Field(
        default_factory=lambda: ["technicians"], description="Recipients of technical incidents."
    )
    webhooks: list[WebhookConfig] = Field(default_factory=list)
    retry: RetryPolicy = Field(default_factory=RetryPolicy)
    retention: RetentionConfig = Field(default_factory=RetentionConfig)
    technical: TechnicalConfig = Field(default_factory=TechnicalConfig)
    contacts: list[ContactConfig] = Field(
        default_factory=list, description="E-mail / SMS-gateway contacts per recipient."
    )
    public_url: HttpUrl | None = Field(
        default=None, description="Dashboard URL, for links in e-mails and messages."
    )
    suppress_after_reject_s: int = Field(
        default=600,
        ge=0,
        le=86_400,
        description="After a rejected match, that person on that camera opens no new"
        " incident for this long (0: off); shown, audited, counted in the false-match report.",
    )
    reraise_shed_after_s: int = Field(
        default=30,
        ge=0,
        le=3600,
        description="A shed whose edge still reports fire or an overheating bay this long"
        " after its incident was closed gets a new incident (0: off).",
    )

    def supervisors_of(self, station: str) -> list[str]:
        return self.supervisors.get(station) or [f"{station}-supervisors"[:64]]
