"""Progress of long work: a bar on a terminal, plain lines otherwise (logs, pipes, CI).

Written to stderr, so commands whose stdout is data (``analyze`` prints JSON lines) stay
machine-readable::

    with progress("installing models", total=5, unit="files") as advance:
        for f in files:
            copy(f)
            advance(1)
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TextIO

Advance = Callable[[int], None]


@contextmanager
def progress(
    description: str,
    total: int | None,
    *,
    unit: str = "",
    stream: TextIO | None = None,
    terminal: bool | None = None,
) -> Iterator[Advance]:
    """Yield ``advance(n)``; draw a rich bar when ``stream`` is a terminal, else print lines.

    Plain lines come at each tenth of ``total`` (or every 5 s when the total is unknown) and
    once at the end, so a log shows how far the work got without one line per item.
    """
    out = stream if stream is not None else sys.stderr
    is_tty = out.isatty() if terminal is None else terminal
    if is_tty:
        with _bar(description, total, unit, out) as advance:
            yield advance
        return
    lines = _PlainLines(description, total, unit, out)
    yield lines.advance
    lines.finish()  # not after an error: the error says what happened


@contextmanager
def _bar(description: str, total: int | None, unit: str, out: TextIO) -> Iterator[Advance]:
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    console = Console(file=out, force_terminal=True)
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn(unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        task = bar.add_task(description, total=total)

        def advance(n: int = 1) -> None:
            bar.advance(task, n)

        yield advance


class _PlainLines:
    def __init__(self, description: str, total: int | None, unit: str, out: TextIO) -> None:
        self.description, self.total, self.unit, self.out = description, total, unit, out
        self.done = 0
        self.started = time.monotonic()
        self._next_tenth = 1
        self._last_line = self.started

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if self.total:
            if self.done * 10 >= self._next_tenth * self.total and self.done < self.total:
                self._next_tenth = self.done * 10 // self.total + 1
                self._line()
        elif now - self._last_line >= 5.0:
            self._last_line = now
            self._line()

    def finish(self) -> None:
        self._line(final=True)

    def _line(self, final: bool = False) -> None:
        of = f"/{self.total}" if self.total else ""
        pct = f" ({100 * self.done // self.total}%)" if self.total else ""
        unit = f" {self.unit}" if self.unit else ""
        took = f" in {time.monotonic() - self.started:.1f} s" if final else ""
        print(f"{self.description}: {self.done}{of}{unit}{pct}{took}", file=self.out, flush=True)
