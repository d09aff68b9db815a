"""`ringwatch demo --check`: broker, hub, a real edge agent on the two demo clips and the
shed sensor simulator reach a watch-list incident and a shed alarm; nothing is left running."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


def _running_with(text: str) -> list[str]:
    found = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in args:
            found.append(args)
    return found


@pytest.mark.data
def test_demo_check_reaches_both_incidents_and_leaves_nothing_running(
    data_dir: Path, models_dir: Path
) -> None:
    argv = [sys.executable, "-m", "ringwatch", "demo", "--check", "--port", "0"]
    argv += ["--data", str(data_dir), "--models", str(models_dir), "--timeout", "120"]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=400)
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    summary = [line for line in done.stdout.splitlines() if line.startswith("demo check:")]
    assert len(summary) == 1, out
    assert summary[0].startswith("demo check: OK: watch-list incident Watch-list: Lin-Manuel")
    assert "shed incident Shed shed-a" in summary[0] and "(alarm, red)" in summary[0]
    assert "log in as demo-admin / " in done.stdout
    var = re.search(r"logs in (\S+);", done.stdout)
    assert var is not None, out
    assert not Path(var.group(1)).exists(), "the demo's temporary folder was left behind"
    assert _running_with(var.group(1)) == [], "a demo child process outlived the demo"


def test_demo_names_a_missing_data_folder(tmp_path: Path) -> None:
    missing = tmp_path / "no-data-here"
    argv = [sys.executable, "-m", "ringwatch", "demo", "--check", "--data", str(missing)]
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert f"demo data folder {missing} not found" in done.stderr
    assert "--data DIR" in done.stderr
