"""Subcommands registered by this module (filled in by its issue)."""

from __future__ import annotations

from typing import Any


def register(sub: Any) -> None:
    """Add this module's subcommands to the `ringwatch` parser (none yet)."""
