"""Technical incidents: devices and cameras offline, an outbox that keeps growing, tampering."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.contract.messages import Event
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.incidents.base import TIMERS, IncidentBase, Status, _lock_key
from ringwatch.hub.incidents.watch import Finding
from ringwatch.hub.routing import Reason
from ringwatch.hub.stages import (
    IncidentKind,
)
from ringwatch.hub.workers import lock_keys


def tamper_finding(event: Event) -> Finding:
    """A tamper event (edge/tamper.py) as the technical finding it raises or resolves."""
    return Finding(
        IncidentKind.CAMERA_TAMPER,
        event.site,
        event.device,
        event.camera,
        event.captured_at,
        event.detail or "camera tampered with",
        resolved=event.phase.value == "end",
    )


class TechnicalIncidents(IncidentBase):
    """Raises and resolves technical incidents from findings."""

    def watch_devices(self, session: Session, now: dt.datetime) -> list[Incident]:
        """Raise (and resolve) technical incidents from the devices' last heartbeats."""
        findings = [
            finding
            for device in session.scalars(sa.select(t.Device)).all()
            for finding in self.technical.observe(
                device.site_id, device.id, device.last_seen_at, device.last_health, now
            )
        ]
        findings += self.quarantine_findings(session, now)
        raised = [self._technical(session, finding, now) for finding in findings]
        return [incident for incident in raised if incident is not None]

    def quarantine_findings(self, session: Session, now: dt.datetime) -> list[Finding]:
        """A ``device_quarantined`` finding per known device with an active flood
        quarantine (hub/quarantine.py), a resolved one per open incident whose quarantine
        was lifted."""
        kind = IncidentKind.DEVICE_QUARANTINED
        active = {
            (q.site_id, q.device_id): q
            for q in session.scalars(
                sa.select(t.DeviceQuarantine).where(t.DeviceQuarantine.lifted_at.is_(None))
            )
        }
        open_keys = {
            (site, key.split("/", 1)[0])
            for site, key in session.execute(
                sa.select(Incident.site_id, Incident.key).where(
                    Incident.kind == kind.value, Incident.status.in_(Status.ACTIVE)
                )
            )
        }
        found = []
        for (site, device), q in active.items():
            if (site, device) in open_keys or session.get(t.Device, (site, device)) is None:
                continue  # raised already, or not a device of ours (logged and audited only)
            detail = (
                f"{q.bad_count} malformed messages in {q.window_s} s from login {q.login}"
                f" ({q.reasons}); shut out until {q.until.isoformat()}"
                + ("" if q.broker_ban else " (not banned at the broker)")
            )
            found.append(Finding(kind, site, device, None, q.started_at, detail))
        for site, device in open_keys - set(active):
            found.append(Finding(kind, site, device, None, now, "quarantine lifted", resolved=True))
        return found

    def _technical(self, session: Session, finding: Finding, now: dt.datetime) -> Incident | None:
        lock_keys(session, [_lock_key(finding.kind.value, finding.site, finding.key)])
        current = session.scalar(
            sa.select(Incident).where(
                Incident.kind == finding.kind.value,
                Incident.site_id == finding.site,
                Incident.key == finding.key,
                Incident.status.in_(Status.ACTIVE),
            )
        )
        if finding.resolved:
            if current is not None:
                current.status, current.closed_at, current.updated_at = Status.CLOSED, now, now
                self._cancel_rest(session, current)
                crud.audit(session, TIMERS, "resolve", "incident", current.id, now, finding.detail)
                self.router.route(session, current, Reason.CLOSED, now)
            return None
        if current is not None:
            return None
        what = finding.kind.value.replace("_", " ")
        target = finding.device + (f" camera {finding.camera}" if finding.camera else "")
        incident = self._create(
            session,
            finding.kind,
            finding.site,
            finding.key,
            finding.since,
            now,
            title=f"{target}: {what}",
            camera=finding.camera,
            device=finding.device,
            late=False,  # found by the hub now: its timers start now
        )
        incident.detail = {"finding": finding.detail}
        self.router.route(session, incident, Reason.NEW, now)
        return incident
