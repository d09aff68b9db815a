"""Loading YAML config files into pydantic models with errors that name file and key path."""

from __future__ import annotations

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
        raise ConfigError(format_config_errors(exc, source)) from None


def load_config(model: type[M], path: Path) -> M:
    return validate_config(model, read_yaml(path), str(path))


def format_config_errors(exc: ValidationError, source: str) -> str:
    lines = []
    for err in exc.errors():
        loc = format_loc(tuple(err["loc"]))
        msg = clean_message(err["msg"])
        if err["type"] == "extra_forbidden":
            msg = "unknown key"
        elif err["type"] == "missing":
            msg = "required key is missing"
        elif "input" in err and err["type"] not in ("value_error", "assertion_error"):
            msg = f"{msg}, got {_short(err['input'])}"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
