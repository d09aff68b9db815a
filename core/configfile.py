"""Loading YAML config files into pydantic models with errors that name file and key path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ringwatch.contract.messages import clean_message, format_loc
from ringwatch.errors import ConfigError

M = TypeVar("M", bound=BaseModel)


def read_yaml(path: Path) -> dict[str, Any]:
    """Read a YAML mapping; raise :class:`ConfigError` for a missing file or bad YAML."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{path}{where}: not valid YAML: {problem}") from None
    if data is None:
        raise ConfigError(f"{path}: file is empty")
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}: expected a mapping of keys at the top, got {type(data).__name__}"
        )
    return data


def validate_config(model: type[M], data: dict[str, Any], source: str) -> M:
    """Validate ``data`` as ``model``; errors read ``source: key.path: what was expected``."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_config_errors(exc, source, model)) from None


def load_config(model: type[M], path: Path) -> M:
    return validate_config(model, read_yaml(path), str(path))


def format_config_errors(
    exc: ValidationError, source: str, model: type[BaseModel] | None = None
) -> str:
    lines = []
    for err in exc.errors():
        loc = format_loc(tuple(err["loc"]))
        msg = clean_message(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key" + _did_you_mean(model, tuple(err["loc"]))
        elif err["type"] == "string_pattern_mismatch":
            msg = f"{_plain_pattern(err.get('ctx', {}).get('pattern'))}, got {_short(err['input'])}"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}, got {_short(err['input'])}"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def redact_url(text: str) -> str:
    """``scheme://user:***@host``: a password in a URL never reaches a message or a table."""
    return _CREDENTIALS.sub(r"\1***@", text)


_CREDENTIALS = re.compile(r"(://[^/\s:@]*:)[^/\s@]*@")


def _short(value: object) -> str:
    text = redact_url(repr(value))
    return text if len(text) <= 60 else text[:57] + "..."


# Regular expressions in field definitions, said in words for the people who edit the files.
PLAIN_PATTERNS = {
    r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$": (
        "expected an id of 1-64 letters, digits, '_', '.' or '-', starting with a letter or digit"
    ),
    r"^mqtts?://[^/\s]+(:\d+)?/?$": "expected mqtt://host:port or mqtts://host:port",
    "^(campus|community)$": "expected campus or community",
    "^(campus|shed)$": "expected campus or shed",
}


def _plain_pattern(pattern: object) -> str:
    return PLAIN_PATTERNS.get(str(pattern), "not in the expected form")


def _did_you_mean(model: type[BaseModel] | None, loc: tuple[int | str, ...]) -> str:
    """`` (did you mean default_ring?)`` when an unknown key is close to a known one."""
    import difflib

    if model is None or not loc:
        return ""
    known = _keys_at(model, loc[:-1])
    close = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _keys_at(model: type[BaseModel], path: tuple[int | str, ...]) -> list[str]:
    """The keys a model accepts at ``path`` (list indices and mapping keys step into items)."""
    current: Any = model
    container = False  # the last step reached a list or mapping: the next part is an item
    for part in path:
        if container:
            container = False
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current, container = _unwrap(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel) and not container:
        return list(current.model_fields)
    return []


def _unwrap(tp: Any) -> tuple[Any, bool]:
    """A field's model type, and whether it sits in a list or mapping (Optional unwrapped)."""
    import typing

    container = False
    for _ in range(4):
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            break
        if typing.get_origin(tp) in (list, dict, tuple):
            container = True
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if not args:
            break
        tp = args[-1]
    return tp, container
