from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.services import Broker, postgres_url, private_broker

REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared"
DATA = SHARED / "data"
MODELS_SRC = SHARED / "models"


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Broker]:
    """A private Mosquitto for the whole session (a real broker, not a mock)."""
    with private_broker(tmp_path_factory.mktemp("mosquitto")) as b:
        yield b


@pytest.fixture(scope="session")
def pg_url() -> str:
    return postgres_url()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    if not DATA.is_dir():
        pytest.skip(f"real data folder {DATA} is absent (CI always has it)")
    return DATA


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The five models installed (copied and verified) into a private folder."""
    if not MODELS_SRC.is_dir():
        pytest.skip(f"model folder {MODELS_SRC} is absent (CI always has it)")
    from ringwatch.models.install import install
    from ringwatch.models.manifest import load_manifest

    target = tmp_path_factory.mktemp("models")
    install(load_manifest(), str(MODELS_SRC), target)
    return target


@pytest.fixture(scope="session")
def face_pipeline(models_dir: Path) -> Any:
    """One ``FacePipeline`` (YuNet + SFace) for the whole session."""
    from ringwatch.models.faces import FacePipeline

    return FacePipeline.from_models_dir(models_dir)


@pytest.fixture(scope="session")
def lfw_embedded(face_pipeline: Any, data_dir: Path) -> Any:
    """The 776 LFW dev images detected and embedded once per session (plain and flipped
    views), shared by the face accuracy modules: ``dict[str, LfwImage]``."""
    from ringwatch.edge.faces_cli import embed_lfw

    return embed_lfw(face_pipeline, data_dir / "faces" / "lfw_dev")
