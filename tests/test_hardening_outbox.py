"""The edge outbox in bad states (issue 11): a file truncated to 0 bytes, a corrupted page,
a full disk. Each is said (log + counters + the heartbeat's damage flag), the damaged file
is set aside with what could be read copied over, and the outbox goes on; nothing is lost
silently. Real SQLite files, a real (small) filesystem for the full disk."""

from __future__ import annotations

import datetime as dt
import logging
import os
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path

import pytest

from ringwatch.edge.health import build_health
from ringwatch.edge.outbox import Outbox, OutboxError, OutboxUnwritable
from tests.test_outbox import make_event


def _filled(path: Path, n: int) -> list[str]:
    with Outbox(path, max_events=1000) as outbox:
        events = [make_event(track=i) for i in range(n)]
        for event in events:
            outbox.put(event)
    return [e.event_id for e in events]


def test_a_truncated_file_is_set_aside_and_said(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "outbox.sqlite3"
    _filled(path, 50)
    path.write_bytes(b"")  # truncated to 0 bytes (the WAL was checkpointed on close)
    with caplog.at_level(logging.ERROR, "ringwatch.edge.outbox"), Outbox(path, 1000) as outbox:
        stats = outbox.stats()
        assert stats.quarantined == 1 and stats.damage is not None
        assert "empty (truncated?)" in stats.damage
        assert (tmp_path / "outbox.sqlite3.damaged-1").exists()
        outbox.put(make_event())  # goes on with a new file
        assert outbox.depth() == 1
    assert any("truncated" in r.getMessage() for r in caplog.records)


def _corrupt_a_page(path: Path) -> None:
    """Overwrite the second page (the outbox table's b-tree) with garbage."""
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big") or 65536
    data[page * 2 : page * 2 + 200] = b"\xa5" * 200
    path.write_bytes(bytes(data))


def test_a_corrupted_page_is_set_aside_with_what_can_be_read(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    ids = _filled(path, 200)
    _corrupt_a_page(path)
    with Outbox(path, 1000) as outbox:  # used to start, then fail every pump for ever
        stats = outbox.stats()
        assert stats.quarantined == 1, stats
        assert stats.damage is not None and "set aside" in stats.damage
        kept = {r.key for r in outbox.due(now=1e9, receipt_timeout=1.0, limit=1000)}
        assert kept <= set(ids) and stats.salvaged == len(kept) == stats.depth
        outbox.put(make_event())
        assert outbox.depth() == len(kept) + 1
        at = dt.datetime(2026, 11, 25, 8, 0, tzinfo=dt.UTC)
        health = build_health(
            site="campus",
            device="box1",
            version="1",
            at=at,
            started_at=at,
            models={},
            cameras=[],
            outbox=outbox.stats(),
            bad_messages=0,
            clock_synced=None,
        )
        assert health.outbox_quarantined == 1 and health.outbox_damage == stats.damage


def test_corruption_found_while_running_recovers_and_keeps_the_event(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite3"
    outbox = Outbox(path, 1000)
    try:
        for i in range(200):
            outbox.put(make_event(track=i))
        outbox._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        _corrupt_a_page(path)
        outbox._db.execute("PRAGMA cache_size=0")  # make SQLite read the damaged page
        late = make_event()
        with suppress(OutboxError):  # the read that finds the damage; the outbox recovers
            outbox.due(now=1e9, receipt_timeout=1.0, limit=1000)
        outbox.put(late)
        keys = {r.key for r in outbox.due(now=1e9, receipt_timeout=1.0, limit=1000)}
        assert late.event_id in keys
        assert outbox.stats().quarantined >= 1
    finally:
        outbox.close()


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs (root only; the CI runs as root)."""
    mount = tmp_path / "tiny"
    mount.mkdir()
    if os.geteuid() != 0 or shutil.which("mount") is None:
        pytest.skip("mounting a small tmpfs needs root")
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)], capture_output=True
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_is_a_counted_refusal_not_a_crash(tiny_disk: Path) -> None:
    outbox = Outbox(tiny_disk / "outbox.sqlite3", max_events=100_000)
    refused = 0
    stored = 0
    try:
        for i in range(3000):
            event = make_event(track=i)
            try:
                outbox.put(event)
                stored += 1
            except OutboxUnwritable as exc:
                refused += 1
                assert "full" in str(exc)
        assert refused > 0 and stored > 0
        stats = outbox.stats()
        assert stats.write_errors == refused and stats.refused >= refused
        assert stats.damage is not None and "write failed" in stats.damage
        assert stats.depth == stored  # what was stored is still there
    finally:
        outbox.close()
