"""The durable outbox: order, due/timeout, release on receipt, bound policy, crash safety."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
from pathlib import Path

import pytest

from ringwatch.contract.ids import new_event_id
from ringwatch.contract.messages import Event, Phase, decode
from ringwatch.contract.topics import EventKind
from ringwatch.edge.outbox import Outbox, OutboxError, OutboxFull, Priority


def make_event(phase: Phase = Phase.START, track: int = 1, device: str = "box1") -> Event:
    return Event(
        event_id=new_event_id(),
        captured_at=dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC),
        site="campus",
        device=device,
        camera="gate",
        kind=EventKind.ZONE,
        phase=phase,
        zone_id="inner",
        track_id=track,
        frame_width=640,
        frame_height=480,
    )


@pytest.fixture
def outbox(tmp_path: Path) -> Outbox:
    return Outbox(tmp_path / "outbox.sqlite3", max_events=5)


def test_put_then_due_in_insertion_order_with_topic_and_payload(outbox: Outbox) -> None:
    events = [make_event(track=i) for i in range(3)]
    for e in events:
        outbox.put(e)
    rows = outbox.due(now=100.0, receipt_timeout=10.0)
    assert [r.key for r in rows] == [e.event_id for e in events]
    assert rows[0].topic == "ringwatch/v1/events/campus/box1/zone"
    assert decode(Event, rows[1].payload) == events[1]
    assert [r.attempts for r in rows] == [0, 0, 0]


def test_sent_rows_become_due_again_only_after_the_receipt_timeout(outbox: Outbox) -> None:
    a, b = make_event(), make_event()
    outbox.put(a)
    outbox.put(b)
    first = outbox.due(now=100.0, receipt_timeout=10.0)
    outbox.mark_sent([first[0].seq], now=100.0)
    assert [r.key for r in outbox.due(105.0, 10.0)] == [b.event_id]
    again = outbox.due(110.0, 10.0)
    assert [r.key for r in again] == [a.event_id, b.event_id]
    assert again[0].attempts == 1
    outbox.mark_unsent()
    assert len(outbox.due(100.5, 10.0)) == 2


def test_release_removes_only_known_ids_and_counts_unknown(outbox: Outbox) -> None:
    a, b = make_event(), make_event()
    outbox.put(a)
    outbox.put(b)
    assert outbox.release([a.event_id, new_event_id()]) == 1
    assert outbox.release([a.event_id]) == 0  # a duplicate receipt
    assert [r.key for r in outbox.due(0.0, 1.0)] == [b.event_id]
    assert outbox.stats().unknown_releases == 2


def test_same_event_put_twice_is_stored_once_and_evicts_nothing(outbox: Outbox) -> None:
    e = make_event()
    outbox.put(e)
    for i in range(4):
        outbox.put(make_event(Phase.UPDATE, track=i))
    outbox.put(e)  # full, but already there: no eviction
    assert outbox.depth() == 5
    assert outbox.stats().dropped == 0


def test_full_outbox_drops_health_then_updates_never_start_or_end(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=4)
    start, end = make_event(Phase.START), make_event(Phase.END)
    upd1, upd2 = make_event(Phase.UPDATE), make_event(Phase.UPDATE)
    box.put_raw("h1", "ringwatch/v1/health/campus/box1", b"{}", Priority.HEALTH)
    for e in (start, upd1, upd2):
        box.put(e)
    box.put(end)  # full: the health row goes first
    assert [r.key for r in box.due(0, 1)] == [
        start.event_id,
        upd1.event_id,
        upd2.event_id,
        end.event_id,
    ]
    start2 = make_event(Phase.START)
    box.put(start2)  # then the oldest update
    keys = [r.key for r in box.due(0, 1)]
    assert keys == [start.event_id, upd2.event_id, end.event_id, start2.event_id]
    assert box.stats().dropped == 2


def test_full_of_start_and_end_refuses_with_a_counted_error(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=2)
    keep = [make_event(Phase.START), make_event(Phase.END)]
    for e in keep:
        box.put(e)
    with pytest.raises(OutboxFull, match="refused"):
        box.put(make_event(Phase.START))
    box.put(make_event(Phase.UPDATE))  # a droppable newcomer is dropped itself, silently counted
    assert [r.key for r in box.due(0, 1)] == [e.event_id for e in keep]
    stats = box.stats()
    assert (stats.refused, stats.dropped, stats.depth) == (1, 1, 2)


def test_full_outbox_drops_an_incoming_health_row_rather_than_an_update(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "o.sqlite3", max_events=2)
    updates = [make_event(Phase.UPDATE, track=1), make_event(Phase.UPDATE, track=2)]
    for e in updates:
        box.put(e)
    box.put_raw("h1", "ringwatch/v1/health/campus/box1", b"{}", Priority.HEALTH)
    assert [r.key for r in box.due(0, 1)] == [e.event_id for e in updates]
    stats = box.stats()
    assert (stats.dropped, stats.refused, stats.depth) == (1, 0, 2)
    box.put_raw("h2", "ringwatch/v1/health/campus/box1", b"{}", Priority.HEALTH)
    box.put(make_event(Phase.UPDATE, track=3))  # an update may still evict an update
    keys = [r.key for r in box.due(0, 1)]
    assert keys[0] == updates[1].event_id and "h2" not in keys
    assert box.stats().dropped == 3


def test_counters_and_rows_survive_reopening(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    box = Outbox(path, max_events=1)
    e = make_event()
    box.put(e)
    box.put(make_event(Phase.UPDATE))
    box.close()
    again = Outbox(path, max_events=1)
    assert [r.key for r in again.due(0, 1)] == [e.event_id]
    assert again.stats().dropped == 1


def test_put_is_on_disk_when_the_process_is_killed(tmp_path: Path) -> None:
    path = tmp_path / "o.sqlite3"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from tests.test_outbox import make_event\n"
        "from ringwatch.edge.outbox import Outbox\n"
        f"box = Outbox(Path({str(path)!r}), 100)\n"
        "for i in range(20):\n"
        "    e = make_event(track=i); box.put(e); print(e.event_id, flush=True)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    repo = Path(__file__).resolve().parent.parent
    proc = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True)
    assert proc.returncode == -9
    printed = proc.stdout.split()
    assert len(printed) == 20
    assert [r.key for r in Outbox(path, 100).due(0, 1)] == printed


def test_unwritable_path_is_a_clear_outbox_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="outbox"):
        Outbox(blocker / "sub" / "o.sqlite3", 10)
