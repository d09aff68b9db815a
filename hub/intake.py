"""Malformed payloads rejected at receive time, off the valid events' batches.

:meth:`Intake.receive` runs on the broker link's thread for every message: it checks the
size first, then the topic and the contract (:func:`~ringwatch.hub.ingest.parse`: a
bounded-size, bounded-depth JSON parse and the contract's models). A message that passes
goes to the ingest worker as before. One that fails never takes a slot in a valid-events
batch: it is queued for the dead-letter writer, a thread that stores such messages in
bulk (one ``executemany`` insert per round, its own transaction), then acks them, sends
the receipts of dead-lettered events and counts each with its reason. Each malformed
payload still gets its dead-letter row (counted exactly, kept for technicians); a hub that
stops before that commit leaves them unacked and the broker redelivers them.

Payload kept: the first :data:`SAMPLES_PER_MINUTE` dead letters of each reason in each
minute keep their payload (biometrics stripped: :func:`~ringwatch.hub.ingest.strip_biometrics`);
the rest of that minute's rows say so instead of keeping it, which spares a flood the
stripping, hashing and storing of every payload (a nesting bomb or a 512 kB payload costs
0.4-0.5 ms to strip). Every malformed message still has its own row with its topic,
reason, detail and size, so the count by reason stays exact.
"""

from __future__ import annotations

import ctypes
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from ringwatch.contract.messages import MAX_RECEIPT_IDS, Receipt, TimeBounds, encode
from ringwatch.contract.topics import receipt_topic
from ringwatch.hub import tables as t
from ringwatch.hub.clock import Clock
from ringwatch.hub.db import SessionFactory, WriteTurns
from ringwatch.hub.ingest import (
    BatchResult,
    Inbound,
    IngestStats,
    Rejected,
    dead_receipt,
    parse,
    strip_biometrics,
)
from ringwatch.hub.quarantine import FloodWatch

log = logging.getLogger(__name__)
MMAP_THRESHOLD = 256 * 1024  # see bound_heap
SAMPLES_PER_MINUTE = 20  # payloads kept per reason per minute; every row is kept


class Intake:
    """Screens each received message; see the module docstring."""

    def __init__(
        self,
        sessions: SessionFactory,
        clock: Clock,
        stats: IngestStats,
        forward: Callable[[Inbound], None],
        time_bounds: TimeBounds | None = None,
        batch_size: int = 500,
        max_wait_s: float = 0.05,
        retry_s: tuple[float, float] = (0.5, 5.0),
        turns: WriteTurns | None = None,
        flood: FloodWatch | None = None,
    ) -> None:
        self.sessions = sessions
        self.flood = flood  # counts each malformed message by its login (hub/quarantine.py)
        self.turns = turns or WriteTurns(enabled=False)  # shared with the ingest worker
        self.clock = clock
        self.stats = stats
        self.forward = forward  # the ingest worker's submit
        self.time_bounds = time_bounds or TimeBounds()
        self.batch_size = batch_size
        self.max_wait_s = max_wait_s
        self.retry_s = retry_s
        self.link: Any = None  # ack(mid, qos) and publish(topic, payload) -> bool
        self.rejected: queue.Queue[tuple[Inbound, Rejected]] = queue.Queue()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._minute: tuple[int, int, int, int] | None = None
        self._kept: dict[str, int] = {}  # payloads kept this minute, by reason

    def attach(self, link: Any) -> None:
        self.link = link

    def receive(self, message: Inbound) -> None:
        """Forward a message that passes the contract; queue one that does not (never
        raises for a bad payload)."""
        verdict = parse(message, self.time_bounds.at(self.clock()))
        if isinstance(verdict, Rejected):
            if self.flood is not None:
                self.flood.note(message.topic, verdict.reason)
            self.rejected.put((message, verdict))
        else:
            self.forward(message)  # checked again against the database by the worker

    def start(self) -> None:
        bound_heap()
        self._thread = threading.Thread(target=self._run, name="hub-dead-letters", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=15)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def pending(self) -> int:
        return self.rejected.qsize()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                batch = self._next_batch()
                if batch:
                    self._process(batch)
            except Exception:  # the dead-letter thread must never die
                self.stats.add(errors=1)
                log.exception("dead-letter round failed; going on")

    def _row(self, item: Rejected) -> dict[str, Any]:
        now = self.clock()
        minute = (now.year, now.month, now.day, now.hour * 60 + now.minute)
        if minute != self._minute:
            self._minute, self._kept = minute, {}
        kept = self._kept.get(item.reason, 0)
        if kept < SAMPLES_PER_MINUTE:
            self._kept[item.reason] = kept + 1
            payload = strip_biometrics(item.payload)
        else:
            payload = (
                f"(payload not kept: {SAMPLES_PER_MINUTE} {item.reason} payloads already kept"
                " this minute)"
            )
        return {
            "topic": item.topic[:300],
            "reason": item.reason[:40],
            "detail": item.detail.replace("\x00", "\\x00")[:4000],
            "size": len(item.payload),
            "payload": payload,
        }

    def _next_batch(self) -> list[tuple[Inbound, Rejected]]:
        try:
            batch = [self.rejected.get(timeout=0.2)]
        except queue.Empty:
            return []
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.batch_size:
            try:
                batch.append(self.rejected.get(timeout=max(0.0, deadline - time.monotonic())))
            except queue.Empty:
                break
        return batch

    def _process(self, batch: list[tuple[Inbound, Rejected]]) -> None:
        rows = [self._row(item) for _, item in batch]
        result = BatchResult()
        for _, item in batch:
            dead_receipt(result, item)
        delay = self.retry_s[0]
        while True:
            try:
                now = self.clock()
                with self.turns.turn(), self.sessions.begin() as session:
                    for row in rows:
                        row["received_at"] = now
                    session.execute(sa.insert(t.DeadLetter), rows)
                break
            except sa.exc.OperationalError as exc:  # database down or locked: keep them
                self.stats.add(errors=1)
                log.error("dead letters not stored, retrying in %.1fs: %s", delay, exc)
                if self._stop.wait(delay):
                    return  # unacked: the broker redelivers them
                delay = min(delay * 2, self.retry_s[1])
        self.stats.add(received=len(batch))
        for _, item in batch:
            self.stats.dead(item.reason)
        if self.link is None:
            return
        for message, _ in batch:
            if message.qos > 0:
                self.link.ack(message.mid, message.qos)
        for (site, device), ids in result.receipts.items():
            for start in range(0, len(ids), MAX_RECEIPT_IDS):
                receipt = Receipt(
                    site=site,
                    device=device,
                    event_ids=ids[start : start + MAX_RECEIPT_IDS],
                    sent_at=self.clock(),
                )
                if self.link.publish(receipt_topic(site, device), encode(receipt)):
                    self.stats.add(receipts_sent=1)


M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def bound_heap(threshold: int = MMAP_THRESHOLD) -> bool:
    """Have glibc serve every allocation of ``threshold`` bytes or more by its own mmap, so
    that freeing it returns the memory at once. By default glibc raises that threshold
    (up to 32 MB) each time such a block is freed, after which large payload copies (up to
    the 1 MB packet limit) come from the heap and stay as arena pages when freed: about
    190 MB over the fuzz benchmark, 8 MB with this. Process-wide; False without glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))


__all__ = ["Intake", "bound_heap"]
