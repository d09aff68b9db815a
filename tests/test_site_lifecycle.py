"""`Site` builds a box's parts in order and undoes them in reverse: on a normal stop, and
when a step fails halfway (nothing left running, the outbox closed and usable again)."""

from __future__ import annotations

import socket
import threading
from pathlib import Path

import pytest
import yaml

from ringwatch.edge.agent import Site
from ringwatch.edge.config import SiteConfig
from ringwatch.edge.outbox import Outbox
from ringwatch.errors import InputError
from tests.services import Broker

CLIP = "faces/watchlist_demo/short_hamilton_clip.mp4"
UNDONE_IN_FULL = [
    "metrics",
    "camera workers",
    "uplink pump",
    "source gate",
    "uplink",
    "broker client",
    "outbox",
]


def site_config(
    tmp: Path, broker: Broker, data: Path, source: Path | None = None, **extra: object
) -> SiteConfig:
    raw: dict[str, object] = {
        "site": "campus",
        "device": "box-1",
        "broker": {"url": broker.url},
        "outbox": {"path": str(tmp / "outbox.sqlite3")},
        "cameras": [
            {
                "id": "gate",
                "source": str(source or data / CLIP),
                "loop": True,
                "fps": 2,
                "tasks": ["persons"],
                "zones": [{"id": "z", "role": "outer", "polygon": [[0, 0], [1, 0], [1, 1]]}],
            }
        ],
        **extra,
    }
    return SiteConfig.model_validate(yaml.safe_load(yaml.safe_dump(raw)))


def agent_threads() -> list[str]:
    return [t.name for t in threading.enumerate() if t.name == "uplink" or "gate" in t.name]


@pytest.mark.data
def test_a_site_is_built_in_order_and_torn_down_in_reverse(
    tmp_path: Path, broker: Broker, data_dir: Path, models_dir: Path
) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    cfg = site_config(tmp_path, broker, data_dir, metrics={"host": "127.0.0.1", "port": port})
    stop = threading.Event()
    with Site(cfg, models_dir, stop) as site:
        assert site.built[0] == "models" and site.built[-1] == "metrics"
        assert agent_threads()
    assert stop.is_set()
    assert site.torn_down == UNDONE_IN_FULL
    assert not agent_threads()
    Outbox(tmp_path / "outbox.sqlite3", 100).close()  # closed: opens again


@pytest.mark.data
def test_a_step_failing_halfway_undoes_what_was_built_before_it_in_reverse(
    tmp_path: Path, broker: Broker, data_dir: Path, models_dir: Path
) -> None:
    """The metrics port is taken: the last step fails; every earlier one is undone."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cfg = site_config(tmp_path, broker, data_dir, metrics={"host": "127.0.0.1", "port": port})
        site = Site(cfg, models_dir, threading.Event())
        with pytest.raises(OSError), site:
            pytest.fail("entered a site whose metrics port is taken")
    assert "metrics" not in site.built
    assert site.torn_down == UNDONE_IN_FULL[1:]
    assert not agent_threads()
    Outbox(tmp_path / "outbox.sqlite3", 100).close()


@pytest.mark.data
def test_a_missing_video_stops_the_build_before_any_thread_starts(
    tmp_path: Path, broker: Broker, data_dir: Path, models_dir: Path
) -> None:
    cfg = site_config(tmp_path, broker, data_dir, tmp_path / "no-such-clip.mp4")
    site = Site(cfg, models_dir, threading.Event())
    with pytest.raises(InputError, match="no-such-clip.mp4 does not exist"), site:
        pytest.fail("entered a site whose video is missing")
    assert site.built == ["models", "outbox", "broker client", "uplink"]
    assert site.torn_down == ["uplink", "broker client", "outbox"]
    assert not agent_threads()
