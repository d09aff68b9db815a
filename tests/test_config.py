from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from ringwatch.contract.colours import Colour, Ring, Tier
from ringwatch.edge.config import CameraRole, load_site_config
from ringwatch.errors import ConfigError
from ringwatch.hub.settings import load_hub_settings

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "configs" / "site-campus.yaml"


def example() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(EXAMPLE.read_text())
    return data


def write(tmp_path: Path, data: dict[str, Any]) -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_example_config_is_valid() -> None:
    cfg = load_site_config(EXAMPLE)
    gate, shed = cfg.cameras
    assert [z.role.value for z in gate.zones] == ["outer", "perimeter", "inner"]
    assert shed.role is CameraRole.SHED and shed.shed == "shed-a"
    zones = gate.camera_zones()
    assert zones.default_ring is Ring.OUTER and len(zones.lines) == 1
    school = gate.schedules["school-hours"]
    assert school.is_open(dt.datetime(2026, 11, 25, 9, 0, tzinfo=dt.UTC))  # Wednesday
    assert not school.is_open(dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.UTC))
    assert not school.is_open(dt.datetime(2026, 11, 28, 9, 0, tzinfo=dt.UTC))  # Saturday
    assert not school.is_open(dt.datetime(2026, 12, 24, 9, 0, tzinfo=dt.UTC))  # holiday


def _cam(data: dict[str, Any], i: int = 0) -> dict[str, Any]:
    cam: dict[str, Any] = data["cameras"][i]
    return cam


def _two_point_polygon(d: dict[str, Any]) -> None:
    _cam(d, 1)["zones"][0]["polygon"] = [[0, 0], [1, 1]]


MISTAKES: list[tuple[str, Any, str]] = [
    (
        "two-point polygon",
        _two_point_polygon,
        "cameras[1].zones[0].polygon: need >= 3 points, got 2",
    ),
    (
        "point outside image",
        lambda d: _cam(d)["zones"][0].update(polygon=[[0, 0], [1.5, 0], [1, 1]]),
        "cameras[0].zones[0].polygon: point (1.5, 0.0) is outside the image",
    ),
    (
        "collinear polygon",
        lambda d: _cam(d)["zones"][1].update(polygon=[[0, 0], [0.5, 0.5], [1, 1]]),
        "cameras[0].zones[1].polygon: polygon has no area",
    ),
    (
        "unknown ring",
        lambda d: _cam(d)["zones"][0].update(role="moat"),
        "cameras[0].zones[0].role: Input should be 'outer', 'perimeter', 'inner' or 'shed', "
        "got 'moat'",
    ),
    ("typo key", lambda d: _cam(d).update(fsp=5), "cameras[0].fsp: unknown key"),
    (
        "negative fps",
        lambda d: _cam(d).update(fps=-2),
        "cameras[0].fps: Input should be greater than 0, got -2",
    ),
    ("missing site", lambda d: d.pop("site"), "site: required key is missing"),
    ("no cameras", lambda d: d.update(cameras=[]), "cameras: List should have at least 1 item"),
    (
        "duplicate camera",
        lambda d: _cam(d, 1).update(id="gate"),
        "(root): camera ids must be unique, repeated: ['gate']",
    ),
    (
        "bad broker url",
        lambda d: d["broker"].update(url="http://x"),
        "broker.url: expected mqtt://host:port or mqtts://host:port",
    ),
    (
        "unknown schedule",
        lambda d: _cam(d)["zones"][2].update(schedule="nights"),
        "cameras[0]: yard: schedule 'nights' is not defined (known: ['school-hours'])",
    ),
    (
        "bad time zone",
        lambda d: _cam(d)["schedules"]["school-hours"].update(timezone="Mars/Base"),
        "cameras[0].schedules.school-hours.timezone: unknown time zone 'Mars/Base'",
    ),
    (
        "end before start",
        lambda d: _cam(d)["schedules"]["school-hours"]["open"][0].update(end="06:00"),
        "cameras[0].schedules.school-hours.open[0]: end 06:00:00 must be after start 07:30:00",
    ),
    (
        "shed camera without shed",
        lambda d: _cam(d, 1).pop("shed"),
        "cameras[1]: a shed camera needs 'shed: <shed id>'",
    ),
    (
        "unknown task",
        lambda d: _cam(d).update(tasks=["persons", "cars"]),
        "cameras[0]: tasks: unknown ['cars']",
    ),
    (
        "line of one point",
        lambda d: _cam(d)["lines"][0].update(b=[0.15, 0.9]),
        "cameras[0].lines[0]: line ends a and b are the same point",
    ),
    (
        "bad threshold",
        lambda d: d["models"]["thresholds"].update(fire=1.5),
        "models.thresholds.fire: Input should be less than or equal to 1, got 1.5",
    ),
    (
        "bad provider",
        lambda d: d["models"].update(provider="tpu"),
        "models.provider: Input should be",
    ),
    (
        "bad camera id",
        lambda d: _cam(d).update(id="gate/1"),
        "cameras[0].id: expected an id of 1-64 letters",
    ),
    (
        "duplicate zone id",
        lambda d: _cam(d)["zones"][1].update(id="road"),
        "cameras[0]: ids must be unique within a camera, repeated: ['road']",
    ),
]


@pytest.mark.parametrize(("name", "mutate", "expected"), MISTAKES, ids=[m[0] for m in MISTAKES])
def test_broken_configs_name_file_key_and_expectation(
    tmp_path: Path, name: str, mutate: Any, expected: str
) -> None:
    data = example()
    mutate(data)
    path = write(tmp_path, data)
    with pytest.raises(ConfigError) as info:
        load_site_config(path)
    assert f"{path}: {expected}" in str(info.value), str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("site: [unclosed", ":1:16: not valid YAML: expected ',' or ']'"),
        ("", "file is empty"),
        ("- just\n- a list\n", "expected a mapping of keys at the top, got list"),
    ],
)
def test_unreadable_files(tmp_path: Path, text: str, expected: str) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=expected):
        load_site_config(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="nope.yaml: file not found"):
        load_site_config(tmp_path / "nope.yaml")


def test_hub_settings_file_then_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = load_hub_settings(REPO / "configs" / "hub.yaml")
    assert settings.database_url == "sqlite:///var/hub.sqlite3"
    assert settings.colour_policy.colour_for(Ring.OUTER, Tier.RED) is Colour.ORANGE
    with pytest.raises(ConfigError, match="jwt_secret, template_key left at the default"):
        settings.check_secrets()
    monkeypatch.setenv("RINGWATCH_HUB_DATABASE_URL", "postgresql+psycopg://x@h/db")
    monkeypatch.setenv("RINGWATCH_HUB_JWT_SECRET", "s3cret-s3cret-s3cret")
    monkeypatch.setenv("RINGWATCH_HUB_TEMPLATE_KEY", "k3y-k3y-k3y-k3y-k3y")
    settings = load_hub_settings(REPO / "configs" / "hub.yaml")
    assert settings.database_url == "postgresql+psycopg://x@h/db"
    settings.check_secrets()


def test_hub_settings_errors_name_the_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.yaml"
    path.write_text("broker_url: ftp://nowhere\ncolour_policy: {base_by_ring: {outer: pink}}\n")
    with pytest.raises(ConfigError) as info:
        load_hub_settings(path)
    text = str(info.value)
    assert f"{path}: broker_url: expected mqtt://host:port or mqtts://host:port" in text
    assert f"{path}: colour_policy.base_by_ring.outer: Input should be" in text


@pytest.mark.parametrize("name", ["hub-sites.yaml", "demo-hub.yaml"])
def test_example_hub_inventories_are_valid(name: str) -> None:
    from ringwatch.configfile import load_config
    from ringwatch.hub.inventory import HubConfig

    config = load_config(HubConfig, REPO / "configs" / name)
    assert config.sites and config.sites[0].devices


@pytest.mark.parametrize("name", ["site-campus.yaml", "towncentre.yaml"])
def test_example_site_configs_are_valid(name: str) -> None:
    assert load_site_config(REPO / "configs" / name).cameras
