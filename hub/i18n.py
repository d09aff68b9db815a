"""The hub's message catalogue (zh-CN and English): API errors turned into sentences for
people, and routed alert titles. One JSON file per language in ``hub/locales/``; both must
hold the same keys (``tests/test_console_i18n.py`` fails otherwise).

The API keeps its English ``detail`` (clients and logs rely on it). A request that names a
language (``Accept-Language``, as every browser sends, or the console's own choice) gets a
``message`` beside it: the sentence in that language. Details are matched by the patterns
below; one that matches none still gets a generic sentence, never a raw English text."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from ringwatch.contract.media import MediaKind

LOCALES = Path(__file__).resolve().parent / "locales"
CONSOLE = Path(__file__).resolve().parent / "dashboard" / "i18n"  # the pages' catalogue
VALUE_GROUPS = ("kind", "level", "media", "ring", "role", "stage", "status")
LANGUAGES = ("zh-CN", "en")

# English API detail -> catalogue key; named groups become the sentence's parameters.
PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = tuple(
    (re.compile(p), key)
    for p, key in (
        (r"^role (?P<role>\w+) may not do this$", "error.role_forbidden"),
        (r"^not in your scope: (?P<what>.+)$", "error.out_of_scope"),
        (r"^(?P<what>.+) not found$", "error.not_found"),
        (r"^incorrect user name or password$", "error.bad_login"),
        (r"^could not validate credentials$", "error.session_ended"),
        (r"^a rejection needs a reason$", "error.reject_needs_reason"),
        (r"^only watch-list matches are confirmed; this is (?P<kind>\w+)$", "error.not_watchlist"),
        (r"^incident is (?P<status>\w+); it was decided already$", "error.decided_already"),
        (r"^a watch-list match is acknowledged by confirming", "error.ack_by_decision"),
        (r"^incident is (?P<status>\w+)( already)?$", "error.incident_state"),
        (r"^confirm or reject a watch-list match before closing it$", "error.decide_first"),
        (r"^incident \S+ has no stage '(?P<stage>\w+)'$", "error.no_stage"),
        (r"^stage (?P<stage>\w+) was done at (?P<at>\S+)$", "error.stage_done"),
        (r"^stages not done: (?P<stages>[\w, ]+); closing anyway needs", "error.close_reason"),
        (r"^stage (?P<stage>\w+) is not done$", "error.stage_not_done"),
        (r"^stage (?P<stage>\w+) can be undone only by (?P<who>\S+) within", "error.undo_late"),
        (r"^incidents are not running$", "error.incidents_off"),
        (r"^tier green means delisted$", "error.green_tier"),
        (r"^photo is in use$", "error.photo_in_use"),
        (r"^user name already taken$", "error.username_taken"),
        (r"^(?P<device>\S+): not connected to the broker$", "error.no_broker"),
        (r"^device (?P<device>\S+): (?P<error>.+)$", "error.device_said"),
        (r"^the hub is starting$", "error.starting"),
        (r"^camera (?P<camera>\S+) is not registered on the hub$", "error.unknown_camera"),
        (r"^site file has no camera '(?P<camera>[^']+)'", "error.file_no_camera"),
        (r"^site file: (?P<error>.+)$", "error.site_file"),
    )
)


@cache
def value_words(language: str) -> Mapping[str, str]:
    """The console's words for stored values (its ``group.value`` keys of
    :data:`VALUE_GROUPS`, e.g. ``kind.watchlist``), as they read inside a sentence. The
    API's sentences and the alerts and case files (:mod:`ringwatch.hub.terms`) take them
    from here, so each value has one word wherever the hub shows it."""
    data: dict[str, str] = json.loads((CONSOLE / f"{language}.json").read_text("utf-8"))
    out: dict[str, str] = {}
    for key, word in data.items():
        group, _, value = key.partition(".")
        if group not in VALUE_GROUPS or not value.isidentifier() or "{" in word:
            continue  # another text, a per-kind variant (stage.shed.acknowledged), a sentence
        if group != "media" or value in set(MediaKind):
            out[key] = _inside_sentence(language, word)
    return out


def _inside_sentence(language: str, word: str) -> str:
    """The console's English labels start with a capital ("Acknowledged"); inside a
    sentence the word does not (acronyms stay)."""
    if language == "en" and word[:1].isupper() and not word[1:2].isupper():
        return word[0].lower() + word[1:]
    return word


@cache
def catalogue(language: str) -> Mapping[str, str]:
    """All sentences of ``language`` (one of :data:`LANGUAGES`), with the value words."""
    data: dict[str, str] = json.loads((LOCALES / f"{language}.json").read_text("utf-8"))
    return {**value_words(language), **data}


def negotiate(header: str | None, default: str) -> str:
    """The first of :data:`LANGUAGES` an ``Accept-Language`` header asks for."""
    for part in (header or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("zh"):
            return "zh-CN"
        if tag.startswith("en"):
            return "en"
    return default


def text(language: str, key: str, **params: Any) -> str:
    """The sentence ``key`` in ``language`` with ``params`` filled in (``{name}``);
    parameters that name a known term (a role, status, stage, kind) are translated."""
    words = catalogue(language)
    sentence = words.get(key) or catalogue("en").get(key) or key
    shown = {k: term(language, str(v)) for k, v in params.items()}
    return re.sub(r"\{(\w+)\}", lambda m: shown.get(m.group(1), m.group(0)), sentence)


def term(language: str, word: str) -> str:
    """A role, status, stage or kind name in ``language`` (other words as they are)."""
    words = catalogue(language)
    for group in ("role", "status", "stage", "kind", "field"):
        found = words.get(f"{group}.{word}")
        if found:
            return found
    if ", " in word:
        return ("、" if language == "zh-CN" else ", ").join(
            term(language, w) for w in word.split(", ")
        )
    return word


def error_sentence(language: str, detail: Any) -> str:
    """A person-readable sentence for a FastAPI ``detail`` (string, {code, message}, list)."""
    if isinstance(detail, list):
        return "; ".join(_validation(language, d) for d in detail if isinstance(d, dict))
    if isinstance(detail, dict) and "code" in detail:
        key = f"photo.{detail['code']}"
        if key in catalogue("en"):
            return text(language, key)
        return text(language, "error.other", detail=detail.get("message", detail["code"]))
    if isinstance(detail, str):
        for pattern, key in PATTERNS:
            m = pattern.search(detail)
            if m:
                return text(language, key, **m.groupdict(default=""))
        return text(language, "error.other", detail=detail)
    return text(language, "error.other", detail=str(detail)[:300])


def _validation(language: str, error: Mapping[str, Any]) -> str:
    loc = [str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path")]
    name = term(language, loc[-1]) if loc else text(language, "error.this_field")
    kind = str(error.get("type", ""))
    key = f"validation.{kind}" if f"validation.{kind}" in catalogue("en") else "validation.other"
    ctx = error.get("ctx") or {}
    return text(language, key, field=name, **{k: v for k, v in ctx.items() if k != "error"})


def alert_title(language: str, incident: Mapping[str, Any]) -> str:
    """An incident's title in ``language``, from its kind and detail (the stored English
    title is kept for old clients)."""
    kind = str(incident.get("kind"))
    detail = incident.get("detail") or {}
    person = detail.get("person") or {}
    ring = incident.get("ring")
    params = {
        "name": person.get("name") or "",
        "camera": incident.get("camera") or incident.get("camera_id") or "",
        "shed": detail.get("shed") or "",
        "device": incident.get("device") or incident.get("device_id") or "",
        "ring": text(language, f"ring.{ring}") if ring else "",
    }
    key = f"title.{kind}" + ("_ring" if kind in ("intrusion", "loitering") and ring else "")
    if key not in catalogue("en"):
        return str(incident.get("title") or kind)
    return text(language, key, **params)


def incident_titles(incident: Any) -> dict[str, str]:
    """An incident row's title in every language (``titles`` in alerts and summaries)."""
    fields = {
        "kind": incident.kind,
        "detail": incident.detail,
        "ring": incident.ring,
        "camera": incident.camera_id,
        "device": incident.device_id,
        "title": incident.title,
    }
    return {language: alert_title(language, fields) for language in LANGUAGES}
