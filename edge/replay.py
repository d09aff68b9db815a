"""``edge run --once``: stop the agent when every recording has been played to its end.

For replaying evidence: the agent runs as usual, and once no video file has frames left
it waits (bounded) for the outbox to hand every event to the hub, then sets ``stop``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol

from ringwatch.edge.capture import FrameSource, VideoFileSource

log = logging.getLogger("ringwatch.edge.replay")


class _Depth(Protocol):
    def depth(self) -> int: ...


def stop_when_replayed(
    sources: Mapping[str, FrameSource],
    outbox: _Depth,
    stop: threading.Event,
    *,
    drain_s: float = 30.0,
    poll_s: float = 0.2,
    clock: Callable[[], float] = time.monotonic,
) -> threading.Thread:
    """Start the watcher thread; it sets ``stop`` after the last recording ended and the
    outbox emptied (or ``drain_s`` passed). Streams never end, so they are not waited for."""

    def watch() -> None:
        files = [s for s in sources.values() if isinstance(s, VideoFileSource)]
        while not stop.wait(poll_s):
            if all(not s.status().online for s in files):
                break
        log.info("every recording has ended; delivering what is queued")
        deadline = clock() + drain_s
        while not stop.is_set() and outbox.depth() > 0 and clock() < deadline:
            stop.wait(poll_s)
        if outbox.depth() > 0:
            log.warning(
                "%d event(s) still queued after %g s; they stay in the outbox",
                outbox.depth(),
                drain_s,
            )
        stop.set()

    thread = threading.Thread(target=watch, name="replay-watch", daemon=True)
    thread.start()
    return thread
