"""The model manifest: what each model is, where it came from, its licence and checksum."""

from __future__ import annotations

import os
from importlib import resources
from pathlib import Path
from typing import Annotated

import yaml
from pydantic import BaseModel, ConfigDict, Field

from ringwatch.configfile import validate_config

Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class ModelEntry(BaseModel):
    """One model file and what we know about it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9_]+$", description="Short name used in configs.")
    task: str = Field(description="face_detection, face_embedding, person_detection, ...")
    file: str = Field(pattern=r"^[A-Za-z0-9_.-]+\.onnx$", description="File name.")
    sha256: Sha256
    licence: str
    licence_clear: bool = Field(description="False when the licence is unclear: shown as such.")
    upstream: str = Field(description="Where the file, or what it was derived from, is published.")
    derived: str = Field(description="Whether and how the file differs from upstream.")
    input: str = Field(description="Input tensor name, shape and pixel format.")
    notes: str = Field(description="Pre- and post-processing notes.")

    @property
    def licence_label(self) -> str:
        return self.licence if self.licence_clear else f"!! {self.licence}"


class Manifest(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models: list[ModelEntry] = Field(min_length=1)

    def get(self, name: str) -> ModelEntry:
        for entry in self.models:
            if entry.name == name:
                return entry
        raise KeyError(f"no model named {name!r} in the manifest (known: {self.names()})")

    def names(self) -> list[str]:
        return [m.name for m in self.models]


def load_manifest() -> Manifest:
    """The manifest shipped with the package (models/manifest.yaml)."""
    text = resources.files("ringwatch.models").joinpath("manifest.yaml").read_text("utf-8")
    return validate_config(Manifest, yaml.safe_load(text), "models/manifest.yaml")


def default_models_dir() -> Path:
    """``$RINGWATCH_MODELS``, else ``~/.cache/ringwatch/models``."""
    env = os.environ.get("RINGWATCH_MODELS")
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "ringwatch" / "models"
