"""The hub config file: police stations, property managers, sites, devices and cameras, plus
matching and ingest settings. Validated once at start-up (errors name the file and key path),
then written into the database, where the API can edit it further.

Example::

    stations: [{id: st-north, name: North Station}]
    managers: [{id: pm-acme, name: Acme Property}]
    sites:
      - id: campus-1
        name: North School
        station: st-north
        manager: pm-acme
        devices:
          - id: box-1
            cameras: [{id: gate, default_ring: perimeter}, {id: shed-cam, role: shed, shed: a}]
    matching: {gallery_size: 10000}
"""

from __future__ import annotations

from pathlib import Path
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ringwatch.configfile import load_config
from ringwatch.contract.colours import Ring
from ringwatch.contract.zones import Ident
from ringwatch.errors import ConfigError
from ringwatch.hub.incident_config import IncidentsConfig
from ringwatch.hub.timezones import DEFAULT_ZONE, TimeZone


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StationConfig(_Section):
    id: Ident
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    kind: str = Field(default="campus", pattern="^(campus|community)$", description="Kind.")


class ManagerConfig(_Section):
    id: Ident
    name: str = Field(min_length=1, max_length=200, description="Display name.")


class CameraEntry(_Section):
    id: Ident
    name: str = Field(default="", max_length=200, description="Display name.")
    role: str = Field(default="campus", pattern="^(campus|shed)$", description="campus or shed.")
    default_ring: Ring | None = Field(default=None, description="Ring for faces in no zone.")
    shed: Ident | None = Field(default=None, description="Shed id, for shed cameras.")


class DeviceEntry(_Section):
    id: Ident
    name: str = Field(default="", max_length=200, description="Display name.")
    cameras: list[CameraEntry] = Field(default_factory=list, description="Its cameras.")


class SiteEntry(_Section):
    id: Ident
    name: str = Field(min_length=1, max_length=200, description="Display name.")
    station: Ident | None = Field(default=None, description="Responsible police station.")
    manager: Ident | None = Field(default=None, description="Property manager (sheds).")
    devices: list[DeviceEntry] = Field(default_factory=list, description="Edge boxes.")
    time_zone: TimeZone = Field(
        default=DEFAULT_ZONE, description="IANA zone the console shows this site's times in."
    )

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        ids = [c.id for d in self.devices for c in d.cameras]
        twice = sorted({i for i in ids if ids.count(i) > 1})
        if twice:
            raise ValueError(f"camera ids must be unique within a site, repeated: {twice}")
        return self


class MatchingConfig(_Section):
    threshold: float | None = Field(
        default=None,
        gt=0,
        lt=1,
        description="Cosine for a match; unset: it follows the gallery size (FPIR <= 1%,"
        " hub/match_threshold.py).",
    )
    top_k: int = Field(
        default=1,
        ge=1,
        le=50,
        description="Persons kept per face at or above the threshold: the best is the one"
        " named (the sighting that raises an incident); more are stored as lower-ranked"
        " candidate sightings for review and never raise an incident of their own.",
    )
    gallery_size: int | None = Field(
        default=None,
        ge=1,
        description="Templates the threshold is calibrated for (FPIR <= 1%) when threshold is"
        " not set; unset: the number of matchable templates (hub/match_threshold.py).",
    )
    exact_below: int = Field(
        default=20_000,
        ge=0,
        description="Below this many active templates every one is scored (exact search).",
    )
    candidates: int = Field(
        default=1024,
        ge=16,
        le=16_384,
        description="Approximate search: candidates re-scored by exact cosine per face.",
    )
    snapshot_file: str | None = Field(
        default=None,
        description="Encrypted snapshot of the index, loaded at start and written at stop.",
    )


class FloodConfig(_Section):
    """Flood quarantine (hub/quarantine.py): a broker login whose topics bring this many
    malformed messages within one window is shut out for a while."""

    bad_per_window: int = Field(
        default=500,
        ge=10,
        le=1_000_000,
        description="Malformed messages from one login within window_s that quarantine it"
        " (a campus box sends about 1 message/s in all).",
    )
    window_s: int = Field(default=10, ge=1, le=3600, description="Counting window, s.")
    quarantine_s: int = Field(
        default=300,
        ge=10,
        le=86400,
        description="First quarantine of a login, s; each further one within a day doubles it"
        " (at most a day).",
    )
    at_broker: bool = Field(
        default=False,
        description="Also shut the login out at the broker (Mosquitto's dynamic-security"
        " plugin, configs/mosquitto.conf; the hub logs in as `<broker_username>-guard`, an"
        " admin there). Off: the hub records, audits and raises the technical incident only.",
    )


class IngestConfig(_Section):
    group: Ident = Field(default="ringwatch-hub", description="Shared subscription group.")
    worker: Ident = Field(default="hub-1", description="Stable client id suffix per worker.")
    batch_size: int = Field(default=200, ge=1, le=1000, description="Messages per commit.")
    session_expiry_s: int = Field(
        default=10,
        ge=0,
        description="MQTT session expiry (s). Short, so that a dead or stopped worker leaves the"
        " shared subscription within seconds (a member whose session lives on keeps its share"
        " of the events queued for it); what it had in flight comes back from the edges'"
        " outboxes, which re-send until the hub's receipt.",
    )
    ack_wait_s: float = Field(
        default=10.0,
        gt=0,
        le=600,
        description="broker_kind nats: a message a worker took and did not ack (it died) goes"
        " to another worker after this long. Set when the durable consumer is first made.",
    )
    flood: FloodConfig = Field(default_factory=FloodConfig)


class HubConfig(_Section):
    """The whole hub config file; each component gets only its own section."""

    stations: list[StationConfig] = Field(default_factory=list)
    managers: list[ManagerConfig] = Field(default_factory=list)
    sites: list[SiteEntry] = Field(default_factory=list)
    matching: MatchingConfig = Field(default_factory=MatchingConfig)
    ingest: IngestConfig = Field(default_factory=IngestConfig)
    incidents: IncidentsConfig = Field(default_factory=IncidentsConfig)

    def reference_errors(self) -> list[str]:
        """Key paths of sites naming a station or manager the file does not define."""
        stations = {s.id for s in self.stations}
        managers = {m.id for m in self.managers}
        errors = []
        for i, site in enumerate(self.sites):
            if site.station is not None and site.station not in stations:
                errors.append(f"sites[{i}].station: unknown station {site.station!r}")
            if site.manager is not None and site.manager not in managers:
                errors.append(f"sites[{i}].manager: unknown manager {site.manager!r}")
        return errors

    def check(self, source: str) -> HubConfig:
        """This config, or ConfigError naming ``source`` and each bad key path."""
        errors = self.reference_errors()
        if errors:
            raise ConfigError("\n".join(f"{source}: {e}" for e in errors))
        return self


def load_hub_config(path: Path) -> HubConfig:
    """Read and validate the hub config file; ConfigError names file and key path."""
    return load_config(HubConfig, path).check(str(path))
