"""``ringwatch hub bench``: ingest rate through a real Mosquitto into SQLite (and PostgreSQL
when a URL is given), receipts included; 1:N search time, recall against exact search,
memory and build time over synthetic unit vectors with real LFW embeddings mixed in; and a
worker's start at the largest size (from the database, then from the snapshot)."""

from __future__ import annotations

import datetime as dt
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import sqlalchemy as sa

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Receipt, decode, encode
from ringwatch.contract.topics import EventKind, event_topic, receipt_topic
from ringwatch.hub.ann import F32, LiveIndex
from ringwatch.hub.app import build_hub
from ringwatch.hub.broker import PrivateMosquitto
from ringwatch.hub.clock import utc_now
from ringwatch.hub.crypto import TemplateCipher
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import Matcher, random_unit_vectors
from ringwatch.hub.settings import HubSettings
from ringwatch.models.identification import threshold_for_gallery
from ringwatch.table import render_table

SECRET = "bench-secret-not-for-production"
CONFIG = {
    "stations": [{"id": "st", "name": "Station"}],
    "sites": [
        {
            "id": "s1",
            "name": "Site",
            "station": "st",
            "devices": [{"id": "d1", "cameras": [{"id": "c1", "default_ring": "outer"}]}],
        }
    ],
}


def _events(n: int) -> list[bytes]:
    rng = np.random.default_rng(1)
    out = []
    for i in range(n):
        face = i % 4 == 0  # a quarter are face events with an embedding (matched, none hit)
        vec = rng.standard_normal(128).astype(np.float32)
        vec /= np.linalg.norm(vec)
        event = Event.model_validate(
            {
                "event_id": new_event_id(),
                "captured_at": dt.datetime.now(dt.UTC),
                "site": "s1",
                "device": "d1",
                "camera": "c1",
                "kind": "face" if face else "zone",
                "phase": "update",
                "ring": "outer",
                "track_id": i,
                "frame_width": 640,
                "frame_height": 360,
                "boxes": [{"x1": 10, "y1": 10, "x2": 50, "y2": 120}],
                "embedding": [float(v) for v in vec] if face else None,
            }
        )
        out.append(encode(event))
    return out


def ingest_rate(db_url: str, broker_url: str, n: int) -> float:
    """Events per second from the first publish to the last receipt."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    tag = uuid.uuid4().hex[:8]
    config = HubConfig.model_validate(
        {**CONFIG, "ingest": {"group": f"b{tag}", "worker": f"b{tag}"}}
    )
    settings = HubSettings(
        database_url=db_url, broker_url=broker_url, jwt_secret=SECRET, template_key=SECRET
    )
    hub = build_hub(settings, config)
    hub.start(ingest=True)
    try:
        assert hub.link is not None and hub.link.connected.wait(10)
        done = threading.Event()
        seen: set[str] = set()

        def on_receipt(c: mqtt.Client, u: object, m: mqtt.MQTTMessage) -> None:
            seen.update(decode(Receipt, bytes(m.payload)).event_ids)
            if len(seen) >= n:
                done.set()

        edge = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-{tag}")
        edge.on_message = on_receipt
        edge.max_inflight_messages_set(1000)
        edge.connect(hub.link.address.host, hub.link.address.port)
        edge.loop_start()
        edge.subscribe(receipt_topic("s1", "d1"), qos=1)
        time.sleep(0.3)
        payloads = _events(n)
        topic_face, topic_zone = (
            event_topic("s1", "d1", k) for k in (EventKind.FACE, EventKind.ZONE)
        )
        start = time.perf_counter()
        for i, payload in enumerate(payloads):
            edge.publish(topic_face if i % 4 == 0 else topic_zone, payload, qos=1)
        done.wait(300)
        elapsed = time.perf_counter() - start
        edge.loop_stop()
        edge.disconnect()
        with hub.sessions() as session:
            stored = session.scalar(sa.text("SELECT count(*) FROM events"))
        if stored != n or len(seen) < n:
            raise RuntimeError(f"stored {stored}, receipted {len(seen)} of {n}")
        return n / elapsed
    finally:
        hub.stop()


def run_bench(
    events: int,
    pg_url: str | None,
    sizes: list[int],
    real: RealFaces | None = None,
    cold_start: bool = False,
) -> Iterator[str]:
    """The tables, each as soon as it is measured: ingest (``events`` > 0), 1:N over
    ``sizes`` and, with ``cold_start``, a worker's start at the largest size."""
    if events > 0:
        yield ingest_table(events, pg_url)
    if sizes:
        yield match_table(sizes, real)
    if cold_start and sizes:
        yield cold_start_table(max(sizes))


def ingest_table(events: int, pg_url: str | None) -> str:
    rows: list[list[object]] = []
    with (
        tempfile.TemporaryDirectory(prefix="ringwatch-bench-") as tmp,
        PrivateMosquitto(Path(tmp) / "mqtt") as broker,
    ):
        rate = ingest_rate(f"sqlite:///{tmp}/bench.sqlite3", broker.url, events)
        rows.append([f"ingest, SQLite, {events} events", f"{rate:.0f} events/s"])
        if pg_url:
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            admin = sa.create_engine(pg_url)
            with admin.begin() as conn:
                conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
            try:
                sep = "&" if "?" in pg_url else "?"
                rate = ingest_rate(
                    f"{pg_url}{sep}options=-csearch_path%3D{schema}", broker.url, events
                )
                rows.append([f"ingest, PostgreSQL, {events} events", f"{rate:.0f} events/s"])
            finally:
                with admin.begin() as conn:
                    conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
                admin.dispose()
    return render_table(["measure", "result"], rows)


# --- 1:N ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RealFaces:
    """Real embeddings: ``enrolled`` go into the gallery (one photo per person, a fifth of
    the people left out); ``probes`` are the other photos (``mated``: their person is in)."""

    enrolled: F32
    probes: F32
    mated: npt.NDArray[np.bool_]

    @classmethod
    def from_lfw(cls, models_dir: Path, data_dir: Path) -> RealFaces:
        from ringwatch.models.faces import FacePipeline, read_image

        pipeline = FacePipeline.from_models_dir(models_dir)
        people = sorted((data_dir / "faces/lfw_dev/images").iterdir())
        enrolled, probes, mated = [], [], []
        for number, person in enumerate(people):
            for i, path in enumerate(sorted(person.glob("*.jpg"))):
                faces = pipeline.detect_and_embed(read_image(path))
                if faces.embeddings is None or not len(faces):
                    continue
                vector = faces.embeddings[int(np.argmax(faces.area))]
                left_out = number % 5 == 0
                if i == 0 and not left_out:
                    enrolled.append(vector)
                else:
                    probes.append(vector)
                    mated.append(not left_out)
        return cls(np.stack(enrolled), np.stack(probes), np.array(mated))


def _rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _gallery(size: int, real: RealFaces | None) -> F32:
    """``size`` unit vectors: synthetic, with the real enrolled faces spread among them."""
    gallery = np.empty((size, 128), np.float32)
    for start in range(0, size, 100_000):
        count = min(100_000, size - start)
        gallery[start : start + count] = random_unit_vectors(count, seed=start + 1)
    if real is not None:
        where = np.random.default_rng(2).choice(size, len(real.enrolled), replace=False)
        gallery[where] = real.enrolled
    return gallery


def _exact_top1(gallery: F32, queries: F32) -> tuple[npt.NDArray[np.int64], F32]:
    best = np.full(len(queries), -2.0, np.float32)
    arg = np.zeros(len(queries), np.int64)
    for start in range(0, len(gallery), 50_000):
        sims = queries @ gallery[start : start + 50_000].T
        j = sims.argmax(axis=1)
        value = sims[np.arange(len(queries)), j]
        better = value > best
        best[better], arg[better] = value[better], j[better] + start
    return arg, best


def _probes(gallery: F32, real: RealFaces | None) -> dict[str, F32]:
    rng = np.random.default_rng(4)
    picks = gallery[rng.choice(len(gallery), 200, replace=False)]
    noisy = picks + 0.06 * rng.standard_normal(picks.shape).astype(np.float32)
    near: F32 = (noisy / np.linalg.norm(noisy, axis=1, keepdims=True)).astype(np.float32)
    out = {"synthetic near-copies": near, "synthetic random": random_unit_vectors(200, seed=5)}
    if real is not None:
        out["real (LFW)"] = real.probes
    return out


EXACT_BELOW = 20_000  # MatchingConfig's default
# Recall@1 is also reported over the probes whose exact best template reaches this cosine
# (the share of real probes that are likely matches; the hub's own threshold runs from 0.436
# for small galleries to 0.543 at 100k templates, docs/faces.md).
DECISIVE = 0.5


def match_table(sizes: list[int], real: RealFaces | None) -> str:
    """Per size and probe set: p50/p99 of one query, recall@1 against exact search (all
    probes, and those whose exact best reaches the watch-list threshold), memory and build
    time; below ``EXACT_BELOW`` both the exact path (the default there) and the forced
    approximate one."""
    rows: list[list[object]] = []
    for size in sizes:
        gallery = _gallery(size, real)
        probes = _probes(gallery, real)
        truth = {name: _exact_top1(gallery, q) for name, q in probes.items()}
        for exact_below in (EXACT_BELOW, 0) if size < EXACT_BELOW else (EXACT_BELOW,):
            rss = _rss_mb()
            t0 = time.perf_counter()
            index = LiveIndex(exact_below=exact_below, capacity=size)
            ids = np.arange(size, dtype=np.int64)
            index.add(ids, ids, np.full(size, dt.date.max.toordinal(), np.int32), gallery)
            build, held = time.perf_counter() - t0, _rss_mb() - rss
            path = "exact" if size < exact_below else "codes + re-score"
            for name, queries in probes.items():
                rows.append([f"{size:,}", path, name, *_measure(index, queries, truth[name])])
            rows[-1] += [f"{index.memory_bytes() / 2**20:.0f} / {held:.0f}", f"{build:.2f}"]
            del index
    head = [
        "templates",
        "search",
        "probes",
        "p50 / p99 ms",
        "recall@1",
        "recall@1 best>=0.5 (n)",
        "index MB / RSS+ MB",
        "build s",
    ]
    return render_table(head, [r + [""] * (len(head) - len(r)) for r in rows])


def _measure(index: LiveIndex, queries: F32, truth: tuple[npt.NDArray[np.int64], F32]) -> list[str]:
    lat: list[float] = []
    hits = np.zeros(len(queries), np.bool_)
    for i, query in enumerate(queries):
        t0 = time.perf_counter()
        found = index.search(query[None, :], 3)[0]
        lat.append((time.perf_counter() - t0) * 1000)
        hits[i] = bool(found) and found[0].template_id == truth[0][i]
    decisive = truth[1] >= DECISIVE
    sure = f"{hits[decisive].mean():.3f} ({decisive.sum()})" if decisive.any() else "-"
    return [
        f"{np.percentile(lat, 50):.2f} / {np.percentile(lat, 99):.2f}",
        f"{hits.mean():.3f}",
        sure,
    ]


def cold_start_table(size: int) -> str:
    """A worker's start with ``size`` encrypted templates in a SQLite file: decrypt and
    index everything (first start, which writes the snapshot), then from the snapshot."""
    from ringwatch.hub.crypto import TemplateCipher
    from ringwatch.hub.db import make_engine, migrate, session_factory
    from ringwatch.hub.inventory import MatchingConfig

    rows: list[list[object]] = []
    with tempfile.TemporaryDirectory(prefix="ringwatch-bench-") as tmp:
        engine = make_engine(f"sqlite:///{tmp}/templates.sqlite3")
        migrate(engine)
        cipher = TemplateCipher(SECRET)
        t0 = time.perf_counter()
        _store_templates(engine, cipher, size)
        took = time.perf_counter() - t0
        rows.append([f"store {size:,} encrypted templates (set-up)", f"{took:.1f} s"])
        sessions = session_factory(engine)
        snap = Path(tmp) / "index.snap"
        config = MatchingConfig(snapshot_file=str(snap))
        for label in ("decrypt + index from the database", "from the snapshot"):
            rss = _rss_mb()
            t0 = time.perf_counter()
            matcher = Matcher(cipher, utc_now, config)
            matcher.warm(sessions)
            took = time.perf_counter() - t0
            how = f"full loads {matcher.full_loads}, snapshot loads {matcher.snapshot_loads}"
            rows.append([f"start: {label}", f"{took:.1f} s, RSS +{_rss_mb() - rss:.0f} MB ({how})"])
            del matcher
        rows.append(["snapshot file (AES-256-GCM)", f"{snap.stat().st_size / 2**20:.0f} MB"])
        engine.dispose()
    return render_table([f"worker start, {size:,} templates", "result"], rows)


def _store_templates(engine: sa.Engine, cipher: TemplateCipher, size: int) -> None:
    from ringwatch.hub import tables as t

    now = dt.datetime.now(dt.UTC)
    per_person = 4
    with engine.begin() as conn:
        conn.execute(sa.insert(t.Station), [{"id": "st", "name": "Station", "kind": "campus"}])
        people = [
            {
                "id": i + 1,
                "display_name": f"p{i}",
                "tier": "red",
                "reason": "bench",
                "case_reference": "B",
                "legal_basis": "bench",
                "station_id": "st",
                "created_by": "bench",
                "created_at": now,
                "updated_at": now,
                "review_due": now.date() + dt.timedelta(days=90),
            }
            for i in range((size + per_person - 1) // per_person)
        ]
        conn.execute(sa.insert(t.Person), people)
    for start in range(0, size, 50_000):
        vectors = random_unit_vectors(min(50_000, size - start), seed=start + 7)
        batch = [
            {
                "id": start + i + 1,
                "person_id": (start + i) // per_person + 1,
                "embedding_enc": cipher.encrypt_embedding(v),
                "crop_enc": b"",
                "quality": 0.9,
                "photo_sha256": "0" * 64,
                "created_by": "bench",
                "created_at": now,
            }
            for i, v in enumerate(vectors)
        ]
        with engine.begin() as conn:
            conn.execute(sa.insert(t.Template), batch)


THRESHOLDS = (0.363, 0.40, 0.45, 0.50, 0.55)


def threshold_table(models_dir: Path, data_dir: Path, every_frame: int = 5) -> str:
    """False matches of every LFW dev face against the enrolled watchlist_demo gallery, and
    clip faces matched per person, at several thresholds (the 1:N trade-off)."""
    from ringwatch.hub.registry import EnrolmentRefused, PhotoEnroller
    from ringwatch.models.faces import FacePipeline, read_image

    pipeline = FacePipeline.from_models_dir(models_dir)
    enroller = PhotoEnroller(pipeline)
    vectors, names, refused = [], [], 0
    demo = data_dir / "faces/watchlist_demo"
    photos = [*sorted((demo / "knn/train").glob("*/*")), demo / "lin-manuel-miranda.png"]
    for photo in photos:
        try:
            vectors.append(enroller.enrol(photo.read_bytes(), photo.name).embedding)
        except EnrolmentRefused:
            refused += 1
            continue
        names.append(photo.parent.name if photo.parent.name != "watchlist_demo" else "lin")
    gallery = np.stack(vectors)
    lfw = []
    for path in sorted((data_dir / "faces/lfw_dev").glob("images/*/*.jpg")):
        faces = pipeline.detect_and_embed(read_image(path))
        if faces.embeddings is not None and len(faces):
            lfw.extend((faces.embeddings @ gallery.T).max(axis=1).tolist())
    clip = _clip_best(pipeline, demo / "short_hamilton_clip.mp4", gallery, names, every_frame)
    rows: list[list[object]] = []
    hub = threshold_for_gallery(len(names))
    for th in sorted({*THRESHOLDS, hub}):
        false = sum(s >= th for s in lfw)
        per = {n: sum(1 for name, s in clip if name == n and s >= th) for n in ("lin", "obama")}
        mark = f" (the hub's for {len(names)} templates)" if th == hub else ""
        rows.append([f"{th:.3f}{mark}", f"{false} / {len(lfw)}", per["lin"], per["obama"]])
    head = (
        f"gallery: {len(names)} templates of {len(set(names))} people ({refused} photos refused); "
        f"clip: {len(clip)} faces in every {every_frame}th frame\n"
    )
    table = render_table(
        ["threshold", "LFW faces matched (false)", "clip faces -> lin", "clip faces -> obama"],
        rows,
    )
    return head + table


def _clip_best(
    pipeline: object, clip: Path, gallery: np.ndarray, names: list[str], every: int
) -> list[tuple[str, float]]:
    import cv2

    from ringwatch.models.faces import FacePipeline

    assert isinstance(pipeline, FacePipeline)
    capture = cv2.VideoCapture(str(clip))
    out: list[tuple[str, float]] = []
    index = 0
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        if index % every == 0:
            faces = pipeline.detect_and_embed(np.asarray(frame, np.uint8))
            if faces.embeddings is not None and len(faces):
                sims = faces.embeddings @ gallery.T
                for row in sims:
                    j = int(np.argmax(row))
                    out.append((names[j], float(row[j])))
        index += 1
    capture.release()
    return out
