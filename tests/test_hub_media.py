"""Evidence media on the hub (SQLite and PostgreSQL): signed per-device uploads through the
real edge uploader, the incident's media list and bytes (scoped, audited, digest-checked),
retention, and the signed case export with its tamper check (also via the CLI)."""

from __future__ import annotations

import datetime as dt
import io
import json
import re
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.media import MediaKind, MediaMeta, device_key, signed_headers
from ringwatch.contract.topics import EventKind
from ringwatch.edge.clips_queue import MediaQueue
from ringwatch.edge.clips_upload import Uploader, UploadResult
from ringwatch.hub import tables as t
from ringwatch.hub.app import Hub, create_app
from ringwatch.hub.export import CaseFile, public_pem, signing_key, verify_export
from ringwatch.hub.incident_tables import Incident
from ringwatch.hub.ingest import Ingestor, IngestStats
from ringwatch.hub.media_tables import MediaItem
from ringwatch.hub.settings import HubSettings
from tests.hub_fixtures import BACKENDS, SECRET, database
from tests.test_incidents import (
    T0,
    USERS,
    Desk,
    FakeClock,
    _user,
    event,
    face,
    incident_config,
    jpeg,
)

EVIDENCE_KEY = "evidence-key-for-tests-only"
CLIP = b"\x00\x00\x00\x18ftypisom" + bytes(range(256)) * 40  # the hub stores bytes as given


class ClientTransport:
    """The uploader's transport over the app's TestClient (same requests, no socket)."""

    def __init__(self, client: TestClient) -> None:
        self.client = client
        self.down = False

    def post(
        self, url: str, body: bytes, headers: dict[str, str], timeout_s: float
    ) -> UploadResult:
        if self.down:
            return UploadResult(None, b"", "ConnectionRefusedError: link cut")
        res = self.client.post(url.removeprefix("http://hub"), content=body, headers=headers)
        return UploadResult(res.status_code, res.content, None if res.is_success else res.text)


@pytest.fixture(params=BACKENDS)
def desk(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Desk]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        clock = FakeClock(T0)
        settings = HubSettings(
            database_url=url, jwt_secret=SECRET, template_key=SECRET,
            evidence_key=EVIDENCE_KEY, media_dir=tmp_path / "media",
        )  # fmt: skip
        app = create_app(settings, incident_config(), clock=clock, ingest=False)
        hub: Hub = app.state.hub
        with TestClient(app) as client:
            assert hub.incidents is not None
            ingestor = Ingestor(
                hub.sessions, hub.matcher, clock, IngestStats(), hub.incidents.on_stored
            )
            users = {name: _user(hub, name, role, scope) for name, role, scope in USERS}
            yield Desk(client, hub, clock, ingestor, users["admin"], url, users)


def meta(event_ids: list[str], kind: MediaKind = MediaKind.CLIP, **over: str) -> MediaMeta:
    at = T0
    fields = {"site": "campus-n", "device": "box-1", "camera": "gate", **over}
    return MediaMeta(
        media_id=new_event_id(), kind=kind, event_ids=event_ids, started_at=at,
        ended_at=at + dt.timedelta(seconds=15), frames=75, width=640, height=360, **fields,
    )  # fmt: skip


def upload_all(desk: Desk, queue: MediaQueue, transport: ClientTransport) -> Uploader:
    key = device_key(EVIDENCE_KEY, "campus-n", "box-1")
    up = Uploader(queue, "http://hub", "campus-n", "box-1", key, transport,
                  clock=lambda: desk.clock().timestamp())  # fmt: skip
    for _ in range(20):
        if not up.step():
            break
    return up


def test_signed_uploads_reach_the_incident_scoped_and_audited(desk: Desk, tmp_path: Path) -> None:
    desk.send(intrusion := event(EventKind.INTRUSION, 0, "gate", snapshot_jpeg=jpeg()))
    [incident] = desk.rows(Incident, Incident.kind == "intrusion")
    queue = MediaQueue(tmp_path / "edge", 10**8)
    clip = meta([intrusion.event_id])
    queue.put(clip, CLIP)
    queue.put(meta([intrusion.event_id], MediaKind.SNAPSHOT), jpeg().encode())
    transport = ClientTransport(desk.client)
    transport.down = True  # the link is cut: both stay queued
    up = upload_all(desk, queue, transport)
    assert queue.stats().depth == 2 and up.stats.failures == 1
    transport.down = False
    desk.clock.advance(1)  # the uploader's pause after no answer
    upload_all(desk, queue, transport)
    assert queue.stats().depth == 0 and queue.stats().uploaded == 2

    admin = desk.users["admin"]
    res = desk.client.get(f"/api/v1/incidents/{incident.id}/media", headers=admin)
    assert res.status_code == 200, res.text
    items = res.json()
    assert sorted(i["kind"] for i in items) == ["clip", "snapshot", "snapshot"]
    [item] = [i for i in items if i["kind"] == "clip"]
    assert (item["content_type"], item["duration_s"]) == ("video/mp4", 15.0)
    got = desk.client.get(item["url"], headers=desk.users["north-officer"])
    assert got.status_code == 200 and got.content == CLIP
    assert got.headers["content-type"] == "video/mp4"
    for name in ("south-officer", "acme", "tech"):  # other station; shed-only; technical-only
        listed = desk.client.get(f"/api/v1/incidents/{incident.id}/media", headers=desk.users[name])
        assert listed.status_code == 403, name
    # the bytes follow the event's scope, like its snapshot: a technician of the site sees
    # intrusion footage (camera behaviour) but never a face clip (see the export test)
    for name, code in (("south-officer", 403), ("acme", 403), ("tech", 200)):
        assert desk.client.get(item["url"], headers=desk.users[name]).status_code == code, name
    audit = desk.rows(t.AuditEntry, t.AuditEntry.entity.in_(["media", "incident_media"]))
    assert [(a.action, a.actor) for a in audit if a.entity_id == clip.media_id] == [
        ("upload", "campus-n/box-1"), ("read", "north-officer"), ("read", "tech"),
    ]  # fmt: skip

    # a file changed on the hub's disk is refused, not served
    [row] = desk.rows(MediaItem, MediaItem.id == clip.media_id)
    (desk.hub.settings.media_dir / row.path).write_bytes(CLIP + b"x")
    assert desk.client.get(item["url"], headers=admin).status_code == 500

    # retention: gone after events_days (30), file and all, unless the incident is confirmed
    assert desk.hub.media_retention is not None
    desk.clock.advance(31 * 86400)
    assert desk.hub.media_retention.run_once() == 2
    assert not (desk.hub.settings.media_dir / row.path).exists()


def _post(
    desk: Desk, m: MediaMeta, body: bytes, key: bytes | None = None,
    h: dict[str, str] | None = None,
) -> int:  # fmt: skip
    key = key or device_key(EVIDENCE_KEY, m.site, m.device)
    headers = {**signed_headers(key, "campus-n", "box-1", m, body, desk.clock()), **(h or {})}
    return desk.client.post("/api/v1/media/upload", content=body, headers=headers).status_code


def test_uploads_are_refused_without_the_devices_own_valid_signature(desk: Desk) -> None:
    ids = [new_event_id()]
    m = meta(ids)
    assert _post(desk, m, CLIP) == 201
    assert _post(desk, m, CLIP) == 201, "a retry of a stored item gets the same answer"
    assert _post(desk, meta(ids), CLIP, key=b"k" * 32) == 401  # not this device's key
    other = device_key(EVIDENCE_KEY, "campus-s", "box-9")  # a real key, of another box
    assert _post(desk, meta(ids), CLIP, key=other) == 401
    own = device_key(EVIDENCE_KEY, "campus-n", "box-1")  # its own key, another box's media
    assert _post(desk, meta(ids, site="campus-s", device="box-9"), CLIP, key=own) == 403
    stale = {"X-Ringwatch-Time": (desk.clock() - dt.timedelta(hours=1)).isoformat()}
    assert _post(desk, meta(ids), CLIP, h=stale) == 401
    assert _post(desk, meta(ids), CLIP, h={"X-Content-SHA256": "0" * 64}) == 401  # signed
    headers = signed_headers(device_key(EVIDENCE_KEY, "campus-n", "box-1"), "campus-n",
                             "box-1", meta(ids), CLIP, desk.clock())  # fmt: skip
    damaged = desk.client.post("/api/v1/media/upload", content=CLIP[:-1], headers=headers)
    assert damaged.status_code == 400 and "damaged" in damaged.text
    with desk.hub.sessions() as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(MediaItem)) == 1


def _export(
    desk: Desk, incident_id: str, who: str = "admin", lang: str = "zh-CN"
) -> tuple[int, bytes]:
    res = desk.client.get(f"/api/v1/incidents/{incident_id}/export?lang={lang}",
                          headers=desk.users[who])  # fmt: skip
    return res.status_code, res.content


def test_case_export_is_complete_signed_and_tampering_is_detected(
    desk: Desk, tmp_path: Path
) -> None:
    _pid, vec = desk.person("Red Person", "red")
    desk.send(sighted := face(vec, 0))
    [incident] = desk.rows(Incident, Incident.kind == "watchlist")
    clip = meta([sighted.event_id])
    assert _post(desk, clip, CLIP) == 201
    url = f"/api/v1/media/{clip.media_id}"
    assert desk.client.get(url, headers=desk.users["tech"]).status_code == 403, "a face clip"
    res = desk.client.post(f"/api/v1/incidents/{incident.id}/confirm",
                           json={"reason": "same scar, same jacket"},
                           headers=desk.users["north-officer"])  # fmt: skip
    assert res.status_code == 200, res.text
    for who in ("acme", "tech", "south-officer"):
        assert _export(desk, incident.id, who)[0] == 403, who
    code, data = _export(desk, incident.id, "north-officer")
    assert code == 200
    zf = zipfile.ZipFile(io.BytesIO(data))
    names = set(zf.namelist())
    assert {"incident.json", "timeline.json", "matches.json", "decisions.json", "routing.json",
            "audit.json", "summary.html", "manifest.json", "manifest.sig"} <= names  # fmt: skip
    assert zf.read(f"media/clip-gate-{clip.media_id}.mp4") == CLIP
    [match] = json.loads(zf.read("matches.json"))
    assert match["person"]["legal_basis"] == "court order (test)"
    assert match["person"]["case_reference"] == "CASE-Red Person"
    assert match["similarity"] >= match["threshold"]
    assert match["live_crop"] in names and match["enrolled_photo"] in names
    decisions = json.loads(zf.read("decisions.json"))
    assert ("confirmed", "north-officer", "same scar, same jacket") in [
        (d["what"], d["by"], d["reason"]) for d in decisions
    ]
    assert json.loads(zf.read("routing.json")), "the alert deliveries are in it"
    summary = zf.read("summary.html").decode()
    assert "<html lang='zh-CN'>" in summary
    for words in (
        "<h1>案卷: Watch-list: Red Person</h1>",
        "重点人员比中",
        "重点人员比中记录",
        "相似度",
        "法律依据: court order (test)",
        "案件编号: CASE-Red Person",
        "已确认",
        "处置环节",
        "签收",
        "录像片段",
        "人像比中",
    ):
        assert words in summary, words
    assert not re.search(r"[àâçéèêëîïôûùüÿœ]|Dossier|Statut|Décision", summary), "no French"
    # Times a reader sees are on the site's clock (Asia/Shanghai) with the offset named; the
    # JSON keeps the stored UTC time.
    stored = json.loads(zf.read("incident.json"))["incident"]["first_seen"]
    local = dt.datetime.fromisoformat(stored).replace(tzinfo=dt.UTC) + dt.timedelta(hours=8)
    assert f"<td>首次发现时间</td><td>{local:%Y-%m-%d %H:%M:%S} UTC+8</td>" in summary, summary
    assert stored[:19].replace("T", " ") not in summary, "a UTC time left in the summary"
    assert b"embedding" not in zf.read("timeline.json")
    exports = desk.rows(t.AuditEntry, t.AuditEntry.action == "export")
    assert [(a.actor, a.entity_id) for a in exports] == [("north-officer", incident.id)]
    assert _export(desk, incident.id, "north-officer", "fr")[0] == 422
    code, english = _export(desk, incident.id, "north-officer", "en")
    assert code == 200, "French is refused, English is the other language"
    assert "<h1>Case file: " in zipfile.ZipFile(io.BytesIO(english)).read("summary.html").decode()

    trusted = public_pem(signing_key(desk.hub.settings))
    assert verify_export(data, trusted).ok
    changed = _rewrite(data, "decisions.json", b"[]")
    assert verify_export(changed, trusted).problems == [
        "decisions.json: SHA-256 differs from the manifest"
    ]
    forged = _resign(data, "decisions.json", b"[]")  # a consistent archive, another key
    assert verify_export(forged, None).ok, "self-consistent with its own key..."
    assert not verify_export(forged, trusted).ok, "...but not signed by the hub"
    added = _rewrite(data, "extra.txt", b"planted")
    assert "extra.txt: not in the manifest (added)" in verify_export(added, trusted).problems
    bomb = _rewrite(data, "manifest.json", b'{"files": ' + b"[" * 5000)  # a nesting bomb
    verdict = verify_export(bomb, trusted)
    assert not verdict.ok and any("manifest unreadable" in p for p in verdict.problems)

    good, bad, key = tmp_path / "case.zip", tmp_path / "bad.zip", tmp_path / "hub.pem"
    good.write_bytes(data)
    bad.write_bytes(changed)
    key.write_bytes(trusted)
    cli = [sys.executable, "-m", "ringwatch", "hub", "verify-export", "--public-key", str(key)]
    ok = subprocess.run([*cli, str(good)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("OK"), ok.stdout + ok.stderr
    no = subprocess.run([*cli, str(bad)], capture_output=True, text=True, timeout=60)
    assert no.returncode == 1 and "TAMPERED" in no.stdout, no.stdout + no.stderr


def _rewrite(data: bytes, name: str, content: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as dst:
        for n in src.namelist():
            if n != name:
                dst.writestr(n, src.read(n))
        dst.writestr(name, content)
    return out.getvalue()


def _resign(data: bytes, name: str, content: bytes) -> bytes:
    src = zipfile.ZipFile(io.BytesIO(data))
    case = CaseFile({n: src.read(n) for n in src.namelist()
                     if n not in ("manifest.json", "manifest.sig")})  # fmt: skip
    case.files[name] = content
    key = Ed25519PrivateKey.generate()
    case.files["public_key.pem"] = public_pem(key)
    manifest = json.loads(src.read("manifest.json"))
    header = {k: v for k, v in manifest.items() if k not in ("files", "format")}
    return case.sign(key, header)


def test_media_migration_matches_the_tables(tmp_path: Path) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from ringwatch.hub.db import make_engine, migrate
    from ringwatch.hub.tables import Base

    engine = make_engine(f"sqlite:///{tmp_path / 'm.sqlite3'}")
    migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    engine.dispose()
    assert not [d for d in diff if "media" in repr(d)]
