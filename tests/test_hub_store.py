"""The batched store path (one INSERT .. ON CONFLICT DO NOTHING RETURNING per batch): two
workers racing on the same events store each once, and both receipt all of them."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from ringwatch.contract.topics import EventKind, event_topic
from ringwatch.hub.app import Hub, build_hub
from ringwatch.hub.bench import CONFIG, _events
from ringwatch.hub.ingest import BatchResult, Inbound, Ingestor
from ringwatch.hub.inventory import HubConfig
from tests.hub_fixtures import BACKENDS, database, settings


@pytest.fixture(params=[b for b in BACKENDS if b != "sqlite"])  # SQLite: one worker only
def hubs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Hub, Hub]]:
    pg = request.getfixturevalue("pg_url") if request.param == "postgresql" else None
    with database(request.param, tmp_path, pg) as url:
        pair = tuple(build_hub(settings(url), HubConfig.model_validate(CONFIG)) for _ in "ab")
        for hub in pair:
            hub.start(ingest=False)
        try:
            yield pair[0], pair[1]
        finally:
            for hub in pair:
                hub.stop()


def test_two_workers_store_each_event_once_and_receipt_all(hubs: tuple[Hub, Hub]) -> None:
    face, zone = (event_topic("s1", "d1", k) for k in (EventKind.FACE, EventKind.ZONE))
    payloads = _events(300)
    batch = [Inbound(face if i % 4 == 0 else zone, p, i) for i, p in enumerate(payloads)]
    batch += batch[:20]  # duplicates inside the batch too
    results: list[BatchResult] = []
    start = threading.Barrier(2)

    def work(hub: Hub) -> None:
        ingestor = Ingestor(hub.sessions, hub.matcher, hub.clock, hub.stats, hub._stored)
        start.wait()
        results.append(ingestor.ingest(batch))

    threads = [threading.Thread(target=work, args=(hub,)) for hub in hubs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert len(results) == 2
    assert sum(r.stored for r in results) == 300, "each event stored exactly once"
    assert all(r.stored + r.duplicates == 320 for r in results)
    for r in results:  # every message receipted by each worker that took it
        assert len(r.receipts[("s1", "d1")]) == 320
    with hubs[0].sessions() as session:
        assert session.scalar(sa.text("SELECT count(*) FROM events")) == 300
        stored = session.scalar(sa.text("SELECT payload FROM events WHERE kind = 'face' LIMIT 1"))
    payload = stored if isinstance(stored, dict) else json.loads(stored)
    assert "embedding" not in payload and payload["kind"] == "face" and payload["site"] == "s1"
