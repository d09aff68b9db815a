from __future__ import annotations

import functools
import http.server
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ringwatch.cli import main
from ringwatch.errors import ModelError
from ringwatch.models.install import FileState, install, model_path, verify_all
from ringwatch.models.manifest import load_manifest
from tests.conftest import MODELS_SRC
from tests.services import free_port

SMALL = ["yunet", "yolox_nano"]  # the small files keep these tests quick


def test_manifest_matches_shared_checksums() -> None:
    manifest = load_manifest()
    assert len(manifest.models) == 5
    sums = MODELS_SRC / "SHA256SUMS"
    if not sums.is_file():
        pytest.skip(f"{sums} is absent")
    published: dict[str, str] = {}
    for line in sums.read_text().splitlines():
        digest, name = line.split()
        published[name] = digest
    assert {m.file: m.sha256 for m in manifest.models} == published
    fire = manifest.get("fire_smoke")
    assert not fire.licence_clear and "UNCLEAR" in fire.licence


def test_install_from_folder_and_verify(models_dir: Path) -> None:
    results = verify_all(load_manifest(), models_dir)
    assert [r.state for r in results] == [FileState.OK] * 5


def test_tampered_and_missing_files_are_caught(models_dir: Path, tmp_path: Path) -> None:
    manifest = load_manifest()
    entry = manifest.get("yunet")
    target = tmp_path / "m"
    target.mkdir()
    with pytest.raises(ModelError, match="is missing; run `ringwatch models install"):
        model_path(entry, target)
    shutil.copy(models_dir / entry.file, target / entry.file)
    assert model_path(entry, target) == target / entry.file
    with (target / entry.file).open("r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    with pytest.raises(ModelError, match="fails its checksum"):
        model_path(entry, target)


def test_install_refuses_a_tampered_source(tmp_path: Path) -> None:
    source = tmp_path / "mirror"
    source.mkdir()
    entry = load_manifest().get("yunet")
    (source / entry.file).write_bytes(b"not the model")
    with pytest.raises(ModelError, match=r"yunet: .* fails its checksum \(expected sha256 8f23"):
        install(load_manifest(), str(source), tmp_path / "out", ["yunet"])
    assert not (tmp_path / "out" / entry.file).exists()
    with pytest.raises(ModelError, match="yolox_nano: .*yolox_nano.onnx not found in"):
        install(load_manifest(), str(source), tmp_path / "out", ["yolox_nano"])


@pytest.fixture
def http_mirror() -> Iterator[str]:
    if not MODELS_SRC.is_dir():
        pytest.skip(f"{MODELS_SRC} is absent")
    handler = functools.partial(_QuietHandler, directory=str(MODELS_SRC))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_install_from_http_mirror(http_mirror: str, tmp_path: Path) -> None:
    paths = install(load_manifest(), http_mirror, tmp_path, SMALL)
    assert [p.name for p in paths] == ["face_detection_yunet_2023mar.onnx", "yolox_nano.onnx"]
    manifest = load_manifest()
    assert model_path(manifest.get("yunet"), tmp_path).is_file()


def test_http_errors_are_clear(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="cannot download http://127.0.0.1:"):
        install(load_manifest(), f"http://127.0.0.1:{free_port()}/", tmp_path, ["yunet"])


def test_http_404_is_clear(http_mirror: str, tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="HTTP 404"):
        install(load_manifest(), http_mirror + "nope/", tmp_path, ["yunet"])


def test_cli_list_flags_unclear_licence(
    models_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["models", "list", "--dir", str(models_dir)]) == 0
    out = capsys.readouterr().out
    assert "!! UNCLEAR" in out and "fire_smoke" in out and "Check before deploying" in out
    assert out.count(" ok") == 5


def test_cli_verify_fails_on_tamper(
    models_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = tmp_path / "copy"
    shutil.copytree(models_dir, target)
    assert main(["models", "verify", "--dir", str(target)]) == 0
    (target / "yolox_nano.onnx").write_bytes(b"evil")
    assert main(["models", "verify", "--dir", str(target)]) == 1
    out = capsys.readouterr().out
    assert "FAIL yolox_nano" in out and "checksum mismatch" in out


def test_cli_install_error_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["models", "install", "--from", str(tmp_path / "none"), "--dir", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"ringwatch: error: models source {tmp_path / 'none'} does not exist;" in err
    assert list(tmp_path.iterdir()) == []  # nothing was copied, nothing "installed"
