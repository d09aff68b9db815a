"""Injected time: every component that needs "now" takes a :data:`Clock`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

Clock = Callable[[], dt.datetime]


def utc_now() -> dt.datetime:
    """The real clock: aware UTC now."""
    return dt.datetime.now(dt.UTC)
