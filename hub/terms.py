"""The words for the values alerts and case files show (incident kinds, colours, levels,
rings, statuses, stages, media...), per language: English ("en") and Simplified Chinese
("zh-CN"). Used by :mod:`ringwatch.hub.notify` (e-mail, SMS/IM) and
:mod:`ringwatch.hub.export` (the case file's summary).

One word per thing: kinds, levels, rings, statuses, stages and media kinds are read from
the console's own catalogue (``hub/dashboard/i18n/<language>.json``), so an SMS, a case
file and the board say the same (the programme's terms, shared GLOSSARY-zh.md: 三道防控圈
外圈 / 周界圈 / 内圈, 签收, 到场, 结束处置, 比中...). Only what the console has no word for
is kept here: the colours as warning tiers (红色预警: an alert names the tier, the board
shows a coloured badge) and the roles of a case file's trajectory points.
``tests/test_hub_notify.py`` checks that both languages have every word and that the
hub's API catalogue (``hub/locales``) uses the same ones.
"""

from __future__ import annotations

import json
from pathlib import Path

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
LANGUAGE_PATTERN = "^(" + "|".join(LANGUAGES) + ")$"

DASHBOARD_CATALOGUES = Path(__file__).resolve().parent / "dashboard" / "i18n"
# what: the catalogue's key prefix ("kind" -> "kind.watchlist")
FROM_CONSOLE = {"kind": "kind", "level": "level", "ring": "ring", "status": "status",
                "stage": "stage", "media": "media"}  # fmt: skip
MEDIA_KINDS = ("clip", "snapshot", "crop")
OWN: dict[str, dict[str, str]] = {
    "en": {
        "colour:yellow": "YELLOW", "colour:orange": "ORANGE", "colour:red": "RED",
        "colour:green": "GREEN", "ring:shed": "shed",
        "role:sighting": "sighting", "role:event": "event", "role:person": "key person",
    },
    "zh-CN": {
        "colour:yellow": "黄色预警", "colour:orange": "橙色预警", "colour:red": "红色预警",
        "colour:green": "绿色", "ring:shed": "停车棚",
        "role:sighting": "人像比中", "role:event": "事件", "role:person": "重点人员",
    },
}  # fmt: skip


def _terms(language: str) -> dict[str, str]:
    """``what:value`` -> word: the console catalogue's words for the groups it has (its
    plain ``group.value`` keys, not the per-kind variants such as ``stage.shed.acknowledged``
    or sentences such as ``media.clip_caption``), then this module's own."""
    path = DASHBOARD_CATALOGUES / f"{language}.json"
    console: dict[str, str] = json.loads(path.read_text("utf-8"))
    out: dict[str, str] = {}
    for what, prefix in FROM_CONSOLE.items():
        for key, word in console.items():
            group, _, value = key.partition(".")
            plain = value.isidentifier() and "{" not in word
            # media: the kinds only, not the media panel's other texts
            if group == prefix and plain and (what != "media" or value in MEDIA_KINDS):
                out[f"{what}:{value}"] = word
    return {**out, **OWN[language]}


# Keys are the stored values, prefixed by what they are: "kind:", "colour:", "level:",
# "ring:", "status:", "stage:", "role:", "media:".
TERMS: dict[str, dict[str, str]] = {language: _terms(language) for language in LANGUAGES}


def term(language: str, what: str, value: str | None) -> str:
    """The word for ``value`` (a stored kind, colour, ring...) in ``language``; the value
    itself when there is none (a configured stage name, say), "" for None."""
    if value is None:
        return ""
    words = TERMS.get(language, TERMS[DEFAULT_LANGUAGE])
    return words.get(f"{what}:{value}", value)
