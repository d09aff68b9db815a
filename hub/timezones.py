"""Site time zones: every site carries an IANA zone (``Asia/Shanghai`` by default) and the
console shows each time of that site in it. Validated once where a zone enters the hub (the
hub config file, the sites API)."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Annotated

from pydantic import AfterValidator

DEFAULT_ZONE = "Asia/Shanghai"


def check_zone(name: str) -> str:
    """``name`` if it is a known IANA time zone; otherwise a ValueError naming it."""
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name such as Asia/Shanghai"
        ) from None
    return name


TimeZone = Annotated[str, AfterValidator(check_zone)]


def site_time(at: dt.datetime | str | None, zone: str) -> str:
    """``2026-12-07 23:07:34 UTC+8``: a stored time (naive datetimes are UTC, as the hub
    stores them; ISO text too) in the site's zone, its offset named, for text a person reads
    away from the console (an SMS, a case file). ``""`` for no time."""
    if at is None or at == "":
        return ""
    when = dt.datetime.fromisoformat(at) if isinstance(at, str) else at
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    local = when.astimezone(zoneinfo.ZoneInfo(zone))
    offset = local.utcoffset() or dt.timedelta(0)
    minutes = int(offset.total_seconds()) // 60
    sign, minutes = ("+" if minutes >= 0 else "-"), abs(minutes)
    name = (
        "UTC"
        if minutes == 0
        else f"UTC{sign}{minutes // 60}" + (f":{minutes % 60:02d}" if minutes % 60 else "")
    )
    return f"{local:%Y-%m-%d %H:%M:%S} {name}"
