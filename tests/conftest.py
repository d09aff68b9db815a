from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

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
