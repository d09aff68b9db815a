"""The words for the values alerts and case files show (incident kinds, colours, levels,
rings, statuses, stages, media...), per language: English ("en") and Simplified Chinese
("zh-CN"). Used by :mod:`ringwatch.hub.notify` (e-mail, SMS/IM) and
:mod:`ringwatch.hub.export` (the case file's summary).

One word per thing: kinds, levels, rings, statuses, stages and media kinds are read from
the console's own catalogue (``hub/dashboard/i18n/<language>.json``, through
:func:`ringwatch.hub.i18n.value_words`), so an SMS, a case file, an API sentence and the
board say the same (the programme's terms, shared GLOSSARY-zh.md: 三道防控圈
外圈 / 周界圈 / 内圈, 签收, 到场, 结束处置, 比中...). Only what the console has no word for
is kept here: the colours as warning tiers (红色预警: an alert names the tier, the board
shows a coloured badge) and the roles of a case file's trajectory points.
``tests/test_hub_notify.py`` checks that both languages have every word.
"""

from __future__ import annotations

from ringwatch.hub.i18n import value_words

LANGUAGES = ("en", "zh-CN")
DEFAULT_LANGUAGE = "en"
LANGUAGE_PATTERN = "^(" + "|".join(LANGUAGES) + ")$"

# the groups whose words come from the console ("role" means a trajectory point's role
# here, a user's role there: this module keeps its own)
CONSOLE_GROUPS = ("kind", "level", "media", "ring", "stage", "status")
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
    """``what:value`` -> word: the console's words (:func:`ringwatch.hub.i18n.value_words`)
    for :data:`CONSOLE_GROUPS`, then this module's own."""
    console = {}
    for key, word in value_words(language).items():
        group, _, value = key.partition(".")
        if group in CONSOLE_GROUPS:
            console[f"{group}:{value}"] = word
    return {**console, **OWN[language]}


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
