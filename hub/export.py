"""Case export: one ZIP per incident that an officer can hand on, with tampering detectable.

The archive holds ``incident.json`` (summary, stages, trajectory), ``timeline.json`` (the
stored events), every clip and snapshot under ``media/``, the match evidence
(``matches.json`` with similarity, threshold, the person's legal basis and case reference,
and the live crop beside the enrolled photo under ``matches/``), ``decisions.json``,
``routing.json`` (every delivery and attempt), ``audit.json``, a human-readable
``summary.html`` in the requested language (en or zh-CN), and ``manifest.json``: the
SHA-256 and size of every other file, signed with the hub's Ed25519 key in ``manifest.sig``.

:func:`verify_export` checks the signature against a trusted public key (the hub's, from
``ringwatch hub export-key``) and every file against the manifest; any added, removed or
changed file, or a re-signed manifest, is reported.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import html
import io
import json
import os
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pydantic_core
import sqlalchemy as sa
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy.orm import Session

from ringwatch.errors import ConfigError
from ringwatch.hub import crud
from ringwatch.hub import tables as t
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.incident_tables import Delivery, DeliveryAttempt, Incident, IncidentPoint
from ringwatch.hub.incident_tables import IncidentStage as Stage
from ringwatch.hub.media import MediaStore, media_of_events
from ringwatch.hub.settings import HubSettings
from ringwatch.hub.terms import DEFAULT_LANGUAGE, term
from ringwatch.hub.timezones import DEFAULT_ZONE, site_time

FORMAT = "ringwatch-case-export/1"
MANIFEST, SIGNATURE = "manifest.json", "manifest.sig"
_SEED_INFO = b"ringwatch case export signing v1"
_BIOMETRIC = ("embedding", "face_crop_jpeg", "snapshot_jpeg")

# -- the signing key ----------------------------------------------------------------------


def signing_key(settings: HubSettings) -> Ed25519PrivateKey:
    """From ``export_key_file`` (created, mode 0600, if missing), else derived by HKDF from
    ``evidence_key`` (or ``jwt_secret``) so every worker of one hub signs alike."""
    path = settings.export_key_file
    if path is None:
        secret = (settings.evidence_key or settings.jwt_secret).encode()
        seed = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEED_INFO).derive(secret)
        return Ed25519PrivateKey.from_private_bytes(seed)
    if not path.exists():
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)
        return key
    try:
        loaded = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"export_key_file {path}: {exc}") from None
    if not isinstance(loaded, Ed25519PrivateKey):
        raise ConfigError(f"export_key_file {path}: not an Ed25519 private key")
    return loaded


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


# -- building -------------------------------------------------------------------------------


@dataclass
class CaseFile:
    """Files of one export as they are gathered (name -> bytes)."""

    files: dict[str, bytes] = field(default_factory=dict)

    def add_json(self, name: str, value: Any) -> None:
        self.files[name] = json.dumps(value, indent=2, default=_jsonable, sort_keys=True).encode()

    def sign(self, key: Ed25519PrivateKey, header: dict[str, Any]) -> bytes:
        listing = {
            n: {"sha256": hashlib.sha256(b).hexdigest(), "size": len(b)}
            for n, b in sorted(self.files.items())
        }
        manifest = json.dumps({**header, "format": FORMAT, "files": listing}, indent=2,
                              sort_keys=True, default=_jsonable).encode()  # fmt: skip
        signature = base64.b64encode(key.sign(manifest))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
            for name, data in sorted(self.files.items()):
                zf.writestr(name, data)
            zf.writestr(MANIFEST, manifest)
            zf.writestr(SIGNATURE, signature)
        return out.getvalue()


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    raise TypeError(f"cannot put {type(value).__name__} in an export")


def _columns(row: Any, skip: tuple[str, ...] = ()) -> dict[str, Any]:
    return {c.key: getattr(row, c.key) for c in sa.inspect(row).mapper.column_attrs
            if c.key not in skip}  # fmt: skip


@dataclass(frozen=True, slots=True)
class ExportInput:
    """What the route has checked the caller may see, and how to read it."""

    incident: Incident
    media_visible: Callable[[Any], bool]
    with_matches: bool
    language: str  # en or zh-CN (the summary's)
    exported_by: str
    now: dt.datetime


def build_export(
    session: Session,
    store: MediaStore,
    cipher: TemplateCipher,
    key: Ed25519PrivateKey,
    spec: ExportInput,
) -> tuple[bytes, str]:
    """The signed ZIP and its manifest digest."""
    inc = spec.incident
    case = CaseFile()
    points = list(
        session.scalars(
            sa.select(IncidentPoint)
            .where(IncidentPoint.incident_id == inc.id)
            .order_by(IncidentPoint.at, IncidentPoint.id)
        )
    )
    stages = list(session.scalars(sa.select(Stage).where(Stage.incident_id == inc.id)
                                  .order_by(Stage.position)))  # fmt: skip
    case.add_json("incident.json", {
        "incident": _columns(inc), "stages": [_columns(s) for s in stages],
        "points": [_columns(p) for p in points],
    })  # fmt: skip
    event_ids = sorted({p.event_id for p in points if p.event_id})
    events = list(session.scalars(sa.select(t.Event).where(t.Event.id.in_(event_ids))
                                  .order_by(t.Event.captured_at)))  # fmt: skip
    case.add_json("timeline.json", [_event(e) for e in events])
    media = _media(session, store, case, event_ids, events, spec)
    matches = _matches(session, cipher, case, points) if spec.with_matches else []
    case.add_json("matches.json", matches)
    decisions = _decisions(session, inc, stages)
    case.add_json("decisions.json", decisions)
    case.add_json("routing.json", _routing(session, inc.id))
    audit = _audit(session, inc.id, [m["id"] for m in media])
    case.add_json("audit.json", audit)
    zone = crud.site_zone(session, inc.site_id)
    case.files["summary.html"] = summary_html(inc, stages, points, media, matches, decisions,
                                              spec.language, zone).encode()  # fmt: skip
    case.files["public_key.pem"] = public_pem(key)
    header = {"incident_id": inc.id, "exported_at": spec.now, "exported_by": spec.exported_by,
              "language": spec.language}  # fmt: skip
    data = case.sign(key, header)
    with zipfile.ZipFile(io.BytesIO(data)) as zf:
        digest = hashlib.sha256(zf.read(MANIFEST)).hexdigest()
    return data, digest


def _event(e: t.Event) -> dict[str, Any]:
    row = _columns(e, ("snapshot_jpeg",))
    row["payload"] = {k: v for k, v in (e.payload or {}).items() if k not in _BIOMETRIC}
    row["has_snapshot"] = e.snapshot_jpeg is not None
    return row


def _media(
    session: Session,
    store: MediaStore,
    case: CaseFile,
    event_ids: list[str],
    events: list[t.Event],
    spec: ExportInput,
) -> list[dict[str, Any]]:
    out = []
    for item in media_of_events(session, event_ids):
        if not spec.media_visible(item):
            continue
        ext = "mp4" if item.kind == "clip" else "jpg"
        name = f"media/{item.kind}-{item.camera_id}-{item.id}.{ext}"
        case.files[name] = store.read(item)
        out.append({"id": item.id, "kind": item.kind, "file": name, "sha256": item.sha256,
                    "camera": item.camera_id, "started_at": item.started_at,
                    "ended_at": item.ended_at})  # fmt: skip
    for event in events:
        if event.snapshot_jpeg is not None and spec.media_visible(event):
            name = f"media/event-snapshot-{event.id}.jpg"
            case.files[name] = event.snapshot_jpeg
            out.append({"id": f"event-{event.id}", "kind": "snapshot", "file": name,
                        "camera": event.camera_id, "started_at": event.captured_at})  # fmt: skip
    case.add_json("media.json", out)
    return out


def _matches(
    session: Session, cipher: TemplateCipher, case: CaseFile, points: list[IncidentPoint]
) -> list[dict[str, Any]]:
    ids = [p.sighting_id for p in points if p.sighting_id is not None]
    out = []
    for s in session.scalars(sa.select(t.Sighting).where(t.Sighting.id.in_(ids))
                             .order_by(t.Sighting.captured_at)):  # fmt: skip
        person = session.get(t.Person, s.person_id)
        entry: dict[str, Any] = {
            "sighting_id": s.id, "event_id": s.event_id, "camera": s.camera_id, "ring": s.ring,
            "captured_at": s.captured_at, "similarity": s.similarity, "threshold": s.threshold,
            "rank": s.rank, "person_id": s.person_id,
        }  # fmt: skip
        if person is not None:
            keys = ("display_name", "tier", "reason", "case_reference", "legal_basis",
                    "station_id", "review_due")  # fmt: skip
            entry["person"] = {k: getattr(person, k) for k in keys}
        if s.crop_jpeg is not None:
            entry["live_crop"] = f"matches/sighting-{s.id}-live.jpg"
            case.files[entry["live_crop"]] = s.crop_jpeg
        template = None if s.template_id is None else session.get(t.Template, s.template_id)
        if template is not None:
            entry["enrolled_photo"] = f"matches/sighting-{s.id}-enrolled-{template.id}.jpg"
            case.files[entry["enrolled_photo"]] = cipher.decrypt(template.crop_enc)
        out.append(entry)
    return out


def _decisions(session: Session, inc: Incident, stages: list[Stage]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if inc.decided_by is not None:
        out.append({"what": inc.status, "by": inc.decided_by, "at": inc.decided_at,
                    "reason": inc.decision_reason})  # fmt: skip
    out += [{"what": f"stage {s.name}", "by": s.done_by, "at": s.done_at, "reason": s.note}
            for s in stages if s.done_at is not None]  # fmt: skip
    return sorted(out, key=lambda d: d["at"] or inc.created_at)


def _routing(session: Session, incident_id: str) -> list[dict[str, Any]]:
    out = []
    rows = session.scalars(sa.select(Delivery).where(Delivery.incident_id == incident_id)
                           .order_by(Delivery.id))  # fmt: skip
    for d in rows:
        attempts = session.scalars(
            sa.select(DeliveryAttempt)
            .where(DeliveryAttempt.delivery_id == d.id)
            .order_by(DeliveryAttempt.id)
        )
        out.append({**_columns(d, ("payload",)), "attempts_log": [_columns(a) for a in attempts]})
    return out


def _audit(session: Session, incident_id: str, media_ids: list[str]) -> list[dict[str, Any]]:
    query = sa.select(t.AuditEntry).where(sa.or_(
        t.AuditEntry.entity_id == incident_id,
        sa.and_(t.AuditEntry.entity == "media", t.AuditEntry.entity_id.in_(media_ids)),
    )).order_by(t.AuditEntry.id)  # fmt: skip
    return [_columns(a) for a in session.scalars(query)]


# -- the human-readable summary -------------------------------------------------------------

TEXT: dict[str, dict[str, str]] = {
    "en": {"title": "Case file", "incident": "Incident", "status": "Status", "site": "Site",
           "first": "First seen", "last": "Last seen", "timeline": "Trajectory",
           "media": "Clips and snapshots", "matches": "Watch-list matches",
           "decisions": "Decisions", "stages": "Response stages", "stage": "stage",
           "similarity": "similarity", "threshold": "threshold", "legal": "legal basis",
           "case": "case reference",
           "verify": "Check this file with: ringwatch hub verify-export FILE --public-key KEY"},
    "zh-CN": {"title": "案卷", "incident": "事件", "status": "状态", "site": "地点",
              "first": "首次发现时间", "last": "最后发现时间", "timeline": "视频追踪轨迹",
              "media": "录像片段和快照", "matches": "重点人员比中记录",
              "decisions": "处置记录", "stages": "处置环节", "stage": "处置环节",
              "similarity": "相似度", "threshold": "阈值", "legal": "法律依据",
              "case": "案件编号",
              "verify": "校验本案卷：ringwatch hub verify-export 案卷文件 --public-key 公钥文件"},
}  # fmt: skip


def _what(language: str, tx: dict[str, str], what: str) -> str:
    """A decision's ``what`` (an incident status, or ``stage <name>``) in ``language``."""
    if what.startswith("stage "):
        return f"{tx['stage']} {term(language, 'stage', what.removeprefix('stage '))}"
    return term(language, "status", what)


def summary_html(
    inc: Incident,
    stages: list[Stage],
    points: list[IncidentPoint],
    media: list[dict[str, Any]],
    matches: list[dict[str, Any]],
    decisions: list[dict[str, Any]],
    language: str,
    time_zone: str = DEFAULT_ZONE,
) -> str:
    """A self-contained page (no scripts) summarising the case in ``language`` (en, zh-CN):
    labels and the stored values (status, rings, colours, stages...) in its words, every time
    on the site's clock with its offset named (the JSON files keep the stored UTC times)."""
    lang = language if language in TEXT else DEFAULT_LANGUAGE
    tx = TEXT[lang]
    e = html.escape

    def at(value: dt.datetime | str | None) -> str:
        return site_time(value, time_zone)

    def w(what: str, value: str | None) -> str:
        return term(lang, what, value)

    def rows(items: list[list[Any]]) -> str:
        return "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>"
                       for r in items)  # fmt: skip

    parts = [
        f"<!doctype html><html lang='{e(lang)}'><meta charset='utf-8'>",
        f"<title>{e(tx['title'])} {e(inc.id)}</title><h1>{e(tx['title'])}: {e(inc.title)}</h1>",
        "<table>" + rows([[tx["incident"], f"{inc.id} ({w('kind', inc.kind)})"],
                          [tx["status"], w("status", inc.status)],
                          [tx["site"], inc.site_id], [tx["first"], at(inc.first_seen)],
                          [tx["last"], at(inc.last_seen)]]) + "</table>",
        f"<h2>{e(tx['timeline'])}</h2><table>"
        + rows([[at(p.at), w("role", p.role), p.camera_id, w("ring", p.ring),
                 w("colour", p.colour)]
                for p in points])
        + "</table>",
        f"<h2>{e(tx['media'])}</h2><ul>"
        + "".join(f"<li>{e(w('media', m['kind']))}: {e(m['file'])}</li>" for m in media)
        + "</ul>",
        f"<h2>{e(tx['matches'])}</h2><table>"
        + rows([[at(m["captured_at"]), m.get("person", {}).get("display_name", ""),
                 f"{tx['similarity']} {m['similarity']:.3f}", f"{tx['threshold']} {m['threshold']}",
                 f"{tx['legal']}: {m.get('person', {}).get('legal_basis', '')}",
                 f"{tx['case']}: {m.get('person', {}).get('case_reference', '')}"]
                for m in matches]) + "</table>",
        f"<h2>{e(tx['decisions'])}</h2><table>"
        + rows([[at(d["at"]), _what(lang, tx, d["what"]), d["by"], d["reason"] or ""]
                for d in decisions]) + "</table>",
        f"<h2>{e(tx['stages'])}</h2><table>"
        + rows([[w("stage", s.name), at(s.due_at), at(s.done_at), s.done_by or "",
                 at(s.missed_at)] for s in stages]) + "</table>",
        f"<p>{e(tx['verify'])}</p></html>",
    ]  # fmt: skip
    return "\n".join(parts)


# -- verifying ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    problems: list[str]
    files: int
    incident_id: str | None
    key_source: str


def verify_export(data: bytes, public_key: bytes | None) -> Verdict:
    """Check a case export; ``public_key`` (PEM) is the trusted hub key. Without it the key
    inside the file is used, which proves only that the file is unchanged since *someone*
    signed it (said in ``key_source``)."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile as exc:
        return Verdict(False, [f"not a ZIP file: {exc}"], 0, None, "none")
    with zf:
        names = set(zf.namelist())
        if MANIFEST not in names or SIGNATURE not in names:
            return Verdict(False, [f"missing {MANIFEST} or {SIGNATURE}"], 0, None, "none")
        manifest_bytes = zf.read(MANIFEST)
        source = "trusted key" if public_key is not None else "key inside the file (untrusted)"
        pem = public_key if public_key is not None else zf.read("public_key.pem")
        problems = _signature_problems(manifest_bytes, zf.read(SIGNATURE), pem)
        try:
            manifest = pydantic_core.from_json(manifest_bytes)  # depth-limited, as at ingest
            listing: dict[str, dict[str, Any]] = manifest["files"]
        except (ValueError, KeyError, TypeError) as exc:
            return Verdict(False, [*problems, f"manifest unreadable: {exc}"], 0, None, source)
        for name, entry in sorted(listing.items()):
            if name not in names:
                problems.append(f"{name}: listed in the manifest but missing")
            elif hashlib.sha256(zf.read(name)).hexdigest() != entry.get("sha256"):
                problems.append(f"{name}: SHA-256 differs from the manifest")
        extra = sorted(names - set(listing) - {MANIFEST, SIGNATURE})
        problems += [f"{name}: not in the manifest (added)" for name in extra]
        return Verdict(not problems, problems, len(listing), manifest.get("incident_id"), source)


def _signature_problems(manifest: bytes, signature_b64: bytes, pem: bytes) -> list[str]:
    try:
        key = serialization.load_pem_public_key(pem)
    except ValueError as exc:
        return [f"public key unreadable: {exc}"]
    if not isinstance(key, Ed25519PublicKey):
        return ["public key is not Ed25519"]
    try:
        key.verify(base64.b64decode(signature_b64, validate=True), manifest)
    except (InvalidSignature, ValueError):
        return ["manifest signature does not verify: the manifest was changed or re-signed"]
    return []


def read_public_key(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"public key {path}: {exc.strerror}") from None
