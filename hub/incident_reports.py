"""Reports over incidents: response times per station and stage, and false-match rates of
watch-list matches per camera and threshold (from the officers' confirm/reject decisions)."""

from __future__ import annotations

import datetime as dt
import statistics
from collections import defaultdict
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from ringwatch.hub.incident_tables import Incident, IncidentStage
from ringwatch.hub.stages import IncidentKind, StageOutcome, StageState, outcome


def response_times(
    session: Session,
    now: dt.datetime,
    stations: frozenset[str] | None,
    since: dt.datetime | None = None,
) -> list[dict[str, Any]]:
    """Per station, kind and stage: how many were met, missed, pending or untimed, and the
    seconds from the incident's creation to the step (mean, median, max)."""
    query = sa.select(IncidentStage, Incident).join(
        Incident, Incident.id == IncidentStage.incident_id
    )
    if stations is not None:
        query = query.where(Incident.station_id.in_(stations))
    if since is not None:
        query = query.where(Incident.created_at >= since)
    groups: dict[tuple[str, str, int, str], list[tuple[IncidentStage, Incident]]] = defaultdict(
        list
    )
    for stage, incident in session.execute(query):
        if stage.cancelled and stage.done_at is None:
            continue
        key = (incident.station_id or "-", incident.kind, stage.position, stage.name)
        groups[key].append((stage, incident))
    return [_row(key, rows, now) for key, rows in sorted(groups.items())]


def _row(
    key: tuple[str, str, int, str], rows: list[tuple[IncidentStage, Incident]], now: dt.datetime
) -> dict[str, Any]:
    station, kind, _, name = key
    counts = dict.fromkeys((o.value for o in StageOutcome), 0)
    took: list[float] = []
    for stage, incident in rows:
        counts[outcome(StageState(stage.due_at, stage.done_at, stage.missed_at), now).value] += 1
        if stage.done_at is not None:
            took.append((stage.done_at - incident.created_at).total_seconds())
    return {
        "station": station,
        "kind": kind,
        "stage": name,
        "within_s": rows[0][0].within_s,
        "incidents": len(rows),
        **counts,
        "mean_s": round(statistics.fmean(took), 1) if took else None,
        "median_s": round(statistics.median(took), 1) if took else None,
        "max_s": round(max(took), 1) if took else None,
    }


def false_matches(session: Session, sites: frozenset[str] | None) -> list[dict[str, Any]]:
    """Per camera and match threshold: decided watch-list incidents, how many were rejected
    as false matches, the rate, and the rejection reasons."""
    query = sa.select(Incident).where(
        Incident.kind == IncidentKind.WATCHLIST.value, Incident.decided_at.is_not(None)
    )
    if sites is not None:
        query = query.where(Incident.site_id.in_(sites))
    groups: dict[tuple[str, float], list[Incident]] = defaultdict(list)
    for incident in session.scalars(query):
        threshold = float(incident.detail.get("threshold", 0.0))
        groups[(incident.camera_id or "-", threshold)].append(incident)
    out = []
    for (camera, threshold), rows in sorted(groups.items()):
        rejected = [r for r in rows if not r.confirmed]
        out.append(
            {
                "camera": camera,
                "threshold": threshold,
                "decided": len(rows),
                "confirmed": len(rows) - len(rejected),
                "rejected": len(rejected),
                "false_match_rate": round(len(rejected) / len(rows), 4),
                "similarities_rejected": sorted(
                    float(r.detail.get("similarity", 0.0)) for r in rejected
                ),
                "reasons": [r.decision_reason for r in rejected if r.decision_reason],
            }
        )
    return out
