"""Site time zones: every site carries an IANA zone (``Asia/Shanghai`` by default) and the
console shows each time of that site in it. Validated once where a zone enters the hub (the
hub config file, the sites API)."""

from __future__ import annotations

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
