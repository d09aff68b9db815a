"""``ringwatch hub bench``: ingest rate through a real Mosquitto into SQLite (and PostgreSQL
when a URL is given), receipts included, and 1:N match time over random unit vectors."""

from __future__ import annotations

import datetime as dt
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path

import numpy as np
import sqlalchemy as sa

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Receipt, decode, encode
from ringwatch.contract.topics import EventKind, event_topic, receipt_topic
from ringwatch.hub.app import build_hub
from ringwatch.hub.broker import PrivateMosquitto
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.matching import ExactIndex, random_unit_vectors
from ringwatch.hub.settings import HubSettings
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


def match_ms(size: int, repeats: int = 30) -> tuple[float, float]:
    """Median ms for one query and for a batch of 20 queries against ``size`` templates."""
    index = ExactIndex.build(
        np.arange(size, dtype=np.int64), np.arange(size, dtype=np.int64), random_unit_vectors(size)
    )
    one = random_unit_vectors(1, seed=7)
    batch = random_unit_vectors(20, seed=8)

    def timed(q: np.ndarray) -> float:
        runs = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            index.search(q, 3)
            runs.append((time.perf_counter() - t0) * 1000)
        return statistics.median(runs)

    return timed(one), timed(batch)


def run_bench(events: int, pg_url: str | None, sizes: list[int]) -> str:
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
    for size in sizes:
        single, batch = match_ms(size)
        rows.append([f"1:N match, {size} templates, 1 query", f"{single:.2f} ms"])
        rows.append([f"1:N match, {size} templates, 20 queries", f"{batch:.2f} ms"])
    return render_table(["measure", "result"], rows)


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
    for th in THRESHOLDS:
        false = sum(s >= th for s in lfw)
        per = {n: sum(1 for name, s in clip if name == n and s >= th) for n in ("lin", "obama")}
        rows.append([f"{th:.3f}", f"{false} / {len(lfw)}", per["lin"], per["obama"]])
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
