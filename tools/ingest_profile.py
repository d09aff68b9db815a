"""Profile the hub's store path in-process (no MQTT): ``Ingestor.ingest`` over the bench's
events in batches of 200, on PostgreSQL (a throwaway schema) or SQLite.

Prints the rate, the CPU time per event of this process (what the 2-core budget pays; the
wall rate depends on the machine's load) and, with ``--profile``, pyinstrument's tree.

    .venv/bin/python tools/ingest_profile.py [--events 2000] [--db sqlite|URL] [--profile]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import uuid

import sqlalchemy as sa

from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub.app import build_hub
from ringwatch.hub.bench import CONFIG, SECRET, _events
from ringwatch.hub.ingest import Inbound, Ingestor
from ringwatch.hub.inventory import HubConfig
from ringwatch.hub.settings import HubSettings

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


def run(url: str, events: int, profile: bool) -> None:
    hub = build_hub(
        HubSettings(database_url=url, jwt_secret=SECRET, template_key=SECRET),
        HubConfig.model_validate(CONFIG),
    )
    hub.start(ingest=False)
    try:
        ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats, hub._stored)
        face, zone = (event_topic("s1", "d1", k) for k in (EventKind.FACE, EventKind.ZONE))
        payloads = _events(events + 10)
        batch = [Inbound(face if i % 4 == 0 else zone, p, i) for i, p in enumerate(payloads)]
        ingestor.ingest(batch[:10])  # warm: first queries, statement caches
        batch = batch[10:]
        profiler = None
        if profile:
            from pyinstrument import Profiler

            profiler = Profiler(interval=0.0005)
            profiler.start()
        cpu, wall = time.process_time(), time.perf_counter()
        for start in range(0, len(batch), 200):
            ingestor.ingest(batch[start : start + 200])
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        if profiler is not None:
            profiler.stop()
            print(profiler.output_text(color=False, unicode=False))
        print(
            f"{len(batch)} events: {len(batch) / wall:.0f} events/s wall, "
            f"{cpu * 1000 / len(batch):.3f} ms CPU per event in this process"
        )
    finally:
        hub.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--db", default=PG, help="'sqlite' or a PostgreSQL URL")
    parser.add_argument("--profile", action="store_true", help="print pyinstrument's tree")
    args = parser.parse_args()
    if args.db == "sqlite":
        with tempfile.TemporaryDirectory() as tmp:
            run(f"sqlite:///{tmp}/hub.sqlite3", args.events, args.profile)
        return
    schema = f"prof_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(args.db)
    with admin.begin() as conn:
        conn.execute(sa.text(f"CREATE SCHEMA {schema}"))
    try:
        run(f"{args.db}?options=-csearch_path%3D{schema}", args.events, args.profile)
    finally:
        with admin.begin() as conn:
            conn.execute(sa.text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


if __name__ == "__main__":
    main()
