"""The real hub dies and returns: no event lost or stored twice, no incident made twice.

A private Mosquitto (persistence on), a database (SQLite file or a fresh PostgreSQL schema),
a real ``ringwatch hub serve`` process and a real edge process (``tests/edge_emitter.py``,
sending intrusion events for one registered camera). While events flow the hub is SIGKILLed,
left down a few seconds, and started again with the same worker id (persistent MQTT session).
Then every event the edge stored must be in ``events`` exactly once, the edge's outbox must
drain (every event receipted), and the one intrusion correlation must have made one incident.
"""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlencode
from urllib.request import Request, urlopen

import pytest
import sqlalchemy as sa
import yaml

from tests.hub_fixtures import BACKENDS, SECRET, create_admin, database
from tests.services import Broker, free_port, wait_for
from tests.test_uplink import depth_of, ledger

REPO = Path(__file__).resolve().parent.parent
RINGWATCH = REPO / ".venv" / "bin" / "ringwatch"
SITE, DEVICE, CAMERA = "crash-site", "crash-box", "gate"
EVENTS, RATE = 300, 50.0
DOWN_S = 4.0

# The edge emitter as a process, sending intrusion events instead of zone events (the hub
# makes incidents of intrusions); everything else is the emitter's own code.
EMITTER = """
import sys
from ringwatch.contract.messages import Event
from tests import edge_emitter as em

zone_event = em.make_event

def intrusion(site, device, n):
    return Event.model_validate({**zone_event(site, device, n).model_dump(), "kind": "intrusion"})

em.make_event = intrusion
sys.exit(em.main())
"""

HUB_CONFIG = {
    "stations": [{"id": "st-crash", "name": "Crash Station"}],
    "sites": [
        {
            "id": SITE,
            "name": "Crash School",
            "station": "st-crash",
            "devices": [{"id": DEVICE, "cameras": [{"id": CAMERA, "default_ring": "inner"}]}],
        }
    ],
    "ingest": {"group": "crash-hub", "worker": "crash-1", "batch_size": 50},
}


class HubProcess:
    """``ringwatch hub serve`` as a subprocess; :meth:`start` can be called again after a kill."""

    def __init__(self, settings: Path, config: Path, port: int, logs: Path) -> None:
        self.settings, self.config, self.port, self.logs = settings, config, port, logs
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0

    def start(self) -> None:
        self.runs += 1
        cmd = [str(RINGWATCH), "hub", "serve", "--settings", str(self.settings)]
        cmd += ["--config", str(self.config), "--port", str(self.port)]
        with (self.logs / f"hub-{self.runs}.log").open("wb") as out:
            self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
        # uvicorn binds its port only after the lifespan start-up (migrations, MQTT link)
        wait_for(self._ready, 40, f"hub run {self.runs} to listen on {self.port}")

    def _ready(self) -> bool:
        assert self.proc is not None
        if self.proc.poll() is not None:
            raise AssertionError(f"the hub exited with {self.proc.returncode}:\n{self.log()}")
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def ingest(self) -> dict[str, Any]:
        """The running hub's ingest counters (since its start) from ``/api/v1/health``."""
        base = f"http://127.0.0.1:{self.port}/api/v1"
        form = urlencode({"username": "admin", "password": "admin-password"}).encode()
        with urlopen(f"{base}/login/access-token", form, timeout=5) as res:
            bearer = {"Authorization": f"Bearer {json.load(res)['access_token']}"}
        with urlopen(Request(f"{base}/health", headers=bearer), timeout=5) as res:
            body: dict[str, Any] = json.load(res)
        ingest: dict[str, Any] = body["ingest"]
        return ingest

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def log(self) -> str:
        return "\n".join(
            p.read_text(errors="replace")[-3000:] for p in sorted(self.logs.glob("hub-*.log"))
        )


@contextmanager
def edge_process(broker_url: str, outbox: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    cmd = [sys.executable, "-c", EMITTER, "--broker", broker_url, "--outbox", str(outbox)]
    cmd += ["--site", SITE, "--device", DEVICE, "--count", str(EVENTS), "--rate", str(RATE)]
    cmd += ["--receipt-timeout", "3"]
    with log.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.terminate()
            proc.wait(15)


def count(engine: sa.Engine, sql: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.text(sql)).scalar_one())


def stored(engine: sa.Engine) -> int:
    return count(engine, "SELECT count(*) FROM events")


def event_ids(engine: sa.Engine) -> set[str]:
    return {str(r[0]) for r in rows(engine, "SELECT id FROM events")}


def rows(engine: sa.Engine, sql: str) -> list[tuple[object, ...]]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_event_lost_or_doubled_when_the_hub_is_sigkilled(
    backend: str, tmp_path: Path, pg_url: str
) -> None:
    mq = tmp_path / "mq"
    mq.mkdir()
    broker = Broker("127.0.0.1", free_port(), mq)
    broker.start()
    logs = tmp_path / "logs"
    logs.mkdir()
    with database(backend, tmp_path, pg_url if backend == "postgresql" else None) as db_url:
        settings = tmp_path / "hub.yaml"
        settings.write_text(
            yaml.safe_dump(
                {
                    "database_url": db_url,
                    "broker_url": broker.url,
                    "jwt_secret": SECRET,
                    "template_key": SECRET,
                }
            )
        )
        config = tmp_path / "hub-sites.yaml"
        config.write_text(yaml.safe_dump(HUB_CONFIG))
        create_admin(db_url)  # /health shows its counters to a logged-in admin only
        hub = HubProcess(settings, config, free_port(), logs)
        engine = sa.create_engine(db_url)
        outbox = tmp_path / "edge-outbox.sqlite3"
        edge_log = tmp_path / "edge.log"
        try:
            hub.start()
            wait_for(lambda: bool(hub.ingest()["connected"]), 20, "the hub's MQTT link")
            with edge_process(broker.url, outbox, edge_log) as edge:
                wait_for(lambda: stored(engine) >= EVENTS // 4, 30, "the first events at the hub")
                hub.kill()
                killed = time.monotonic()
                assert "generated" not in edge_log.read_text(), "killed after the events stopped"
                at_kill = stored(engine)
                time.sleep(DOWN_S)  # events keep coming: they wait at the broker and outbox
                restart = time.monotonic()
                hub.start()
                back = time.monotonic()
                wait_for(lambda: "generated" in edge_log.read_text(), 30, "the edge to finish")
                must, maybe = ledger(edge_log)
                assert len(must) == EVENTS
                wait_for(lambda: must <= event_ids(engine), 30, "every stored event at the hub")
                all_in = time.monotonic() - back
                wait_for(lambda: depth_of(outbox) == 0, 30, "an empty edge outbox")
                drained = time.monotonic() - back
                second_run = hub.ingest()
                edge.send_signal(signal.SIGTERM)
                edge.wait(15)
            counters = [ln for ln in edge_log.read_text().splitlines() if ln.startswith("counters")]
            received = event_ids(engine)

            # (1) every event exactly once: no id missing, none extra, no id on two rows
            assert received == must | (maybe & received)
            assert received <= must | maybe
            doubled = rows(
                engine, "SELECT id, count(*) FROM events GROUP BY id HAVING count(*) > 1"
            )
            assert doubled == []
            # ... and the incident hook ran once per event (one point per event id)
            points = rows(
                engine,
                "SELECT event_id, count(*) FROM incident_points WHERE role = 'event'"
                " GROUP BY event_id",
            )
            assert {str(e) for e, _ in points} == received
            assert [p for p in points if p[1] != 1] == []
            # (2) every event receipted: the outbox drained (asserted by wait_for above)
            assert depth_of(outbox) == 0
            # (3) one correlation (intrusions on one camera, within the window) = one incident,
            # and its "new" alert was routed once per recipient and channel
            incidents = rows(
                engine, "SELECT kind, site_id, key, status FROM incidents ORDER BY created_at"
            )
            assert incidents == [("intrusion", SITE, f"camera:{CAMERA}", "open")]
            new_alerts = rows(
                engine,
                "SELECT channel, recipient_kind, recipient, count(*) FROM deliveries"
                " WHERE reason = 'new' GROUP BY channel, recipient_kind, recipient",
            )
            assert new_alerts, "the new intrusion incident was routed nowhere"
            assert [a for a in new_alerts if a[3] != 1] == []
            assert count(engine, "SELECT count(*) FROM dead_letters") == 0
            # the restarted hub stored exactly what the killed one had not committed
            assert second_run["stored"] == len(received) - at_kill
            print(
                f"\nHUB CRASH ({backend}): events {len(must)} sent, {len(received)} stored once; "
                f"{at_kill} stored at the SIGKILL, hub down {back - killed:.1f} s (start-up "
                f"{back - restart:.1f} s); after it listened again all stored in {all_in:.1f} s, "
                f"outbox empty in {drained:.1f} s; incidents {len(incidents)}; "
                f"edge {counters[-1:]}; hub after the restart: {second_run}"
            )
        except BaseException:
            edge_out = edge_log.read_text()[-2000:] if edge_log.exists() else ""
            print(f"--- hub logs ---\n{hub.log()}\n--- edge ---\n{edge_out}")
            raise
        finally:
            hub.stop()
            engine.dispose()
            broker.stop()
