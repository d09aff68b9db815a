"""tools/setup.sh (run by `make test` and `.ci/run`) and the demo's port choice.

The script is run with a PATH that holds only stand-ins for the tools it looks for, so a
missing tool is simulated without touching the machine; ``--check`` never installs.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from ringwatch.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SETUP = REPO / "tools" / "setup.sh"
BASH = shutil.which("bash") or "/bin/bash"
TOOLS = ("mosquitto", "nats-server", "ffmpeg", "pg_ctlcluster", "psql")


BASICS = ("sh", "sed", "id", "cut", "grep", "sort", "tail", "ls", "seq", "sleep", "cat")


def _fake_bin(folder: Path, names: tuple[str, ...]) -> Path:
    """A folder to be the whole PATH: stand-ins for ``names`` plus the shell basics."""
    folder.mkdir(parents=True, exist_ok=True)
    for basic in BASICS:
        real = shutil.which(basic)
        assert real is not None, basic
        (folder / basic).symlink_to(real)
    for name in names:
        tool = folder / name
        tool.write_text("#!/bin/sh\nexit 0\n")
        tool.chmod(0o755)
    return folder


def _run_setup(
    tmp_path: Path, present: tuple[str, ...], *args: str
) -> subprocess.CompletedProcess[str]:
    fake = _fake_bin(tmp_path / "bin", present)
    env = {
        "PATH": str(fake),
        "HOME": str(tmp_path),
        "RINGWATCH_CHROMIUM": str(fake / "chromium"),
        "RINGWATCH_SYSTEM_PYTHON": str(fake / "python3"),
        "RINGWATCH_SETUP_SBIN": "0",
    }
    return subprocess.run(
        [BASH, str(SETUP), *args], env=env, capture_output=True, text=True, timeout=60
    )


ALL = (*TOOLS, "chromium", "python3")


def test_check_passes_when_every_tool_is_there(tmp_path: Path) -> None:
    done = _run_setup(tmp_path, ALL, "--check")
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize(
    ("absent", "package"),
    [("ffmpeg", "ffmpeg"), ("chromium", "chromium"), ("nats-server", "nats-server")],
)
def test_a_missing_tool_stops_in_one_line_naming_it_and_the_install_command(
    tmp_path: Path, absent: str, package: str
) -> None:
    done = _run_setup(tmp_path, tuple(t for t in ALL if t != absent), "--check")
    assert done.returncode == 1
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout
    assert lines[0].startswith(f"setup: missing {absent}; install with: ")
    assert lines[0].endswith(f"apt-get install -y {package}")


def test_several_missing_tools_are_named_together(tmp_path: Path) -> None:
    done = _run_setup(tmp_path, ("mosquitto", "nats-server", "pg_ctlcluster", "psql"), "--check")
    assert done.returncode == 1
    assert done.stdout.startswith("setup: missing ffmpeg, chromium, gstreamer-rtsp-server;")
    assert "gstreamer1.0-rtsp" in done.stdout and "python3-gi" in done.stdout


def test_install_forbidden_by_environment_behaves_like_check(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path / "bin", tuple(t for t in ALL if t != "ffmpeg"))
    env = {
        "PATH": str(fake),
        "RINGWATCH_CHROMIUM": str(fake / "chromium"),
        "RINGWATCH_SYSTEM_PYTHON": str(fake / "python3"),
        "RINGWATCH_SETUP_INSTALL": "0",
        "RINGWATCH_SETUP_SBIN": "0",
    }
    done = subprocess.run([BASH, str(SETUP)], env=env, capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stdout.startswith("setup: missing ffmpeg; install with:")


def test_make_test_and_ci_run_both_go_through_the_setup_script() -> None:
    makefile = (REPO / "Makefile").read_text()
    assert "test: setup install" in makefile and "tools/setup.sh" in makefile
    assert "make test" in (REPO / ".ci" / "run").read_text()
    assert os.access(SETUP, os.X_OK)


def test_demo_port_falls_back_to_a_free_one_when_the_default_is_taken() -> None:
    from ringwatch.demo import choose_port

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        busy = held.getsockname()[1]
        port, note = choose_port(None, preferred=busy)
        assert port != busy and port > 0
        assert note == f"port {busy} is taken; using {port} (choose one with --port N)"
        with pytest.raises(ConfigError, match=f"port {busy} is not free"):
            choose_port(busy)
    assert choose_port(busy) == (busy, None)
    assert choose_port(None, preferred=busy) == (busy, None)
    assert choose_port(0)[0] > 0


def test_make_demo_passes_port_only_when_given() -> None:
    def demo_line(*args: str) -> str:
        done = subprocess.run(
            ["make", "-n", "demo", *args], cwd=REPO, capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stderr
        return next(line for line in done.stdout.splitlines() if "ringwatch demo" in line)

    assert demo_line("PORT=8123").endswith("--port 8123")
    assert "--port" not in demo_line()
