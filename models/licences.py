"""One wording for a model whose licence is unclear, wherever models are listed or used."""

from __future__ import annotations

from collections.abc import Iterable

from ringwatch.models.manifest import ModelEntry


def licence_notes(entries: Iterable[ModelEntry]) -> list[str]:
    """One ``!! name: licence ... Check before deploying.`` line per entry whose licence is
    unclear (the wording of ``ringwatch models list``); empty when every licence is clear."""
    return [
        f"!! {e.name}: licence {e.licence}. Check before deploying."
        for e in entries
        if not e.licence_clear
    ]
