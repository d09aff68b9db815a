"""Install model files from a folder or an HTTP mirror, and verify their checksums."""

from __future__ import annotations

import hashlib
import shutil
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from ringwatch.errors import ModelError
from ringwatch.models.manifest import Manifest, ModelEntry

_CHUNK = 1 << 20


class FileState(StrEnum):
    OK = "ok"
    MISSING = "missing"
    TAMPERED = "checksum mismatch"


@dataclass(frozen=True, slots=True)
class Verified:
    entry: ModelEntry
    path: Path
    state: FileState
    actual_sha256: str | None


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_file(entry: ModelEntry, models_dir: Path) -> Verified:
    path = models_dir / entry.file
    if not path.is_file():
        return Verified(entry, path, FileState.MISSING, None)
    actual = sha256_of(path)
    state = FileState.OK if actual == entry.sha256 else FileState.TAMPERED
    return Verified(entry, path, state, actual)


def verify_all(manifest: Manifest, models_dir: Path) -> list[Verified]:
    return [verify_file(entry, models_dir) for entry in manifest.models]


def model_path(entry: ModelEntry, models_dir: Path) -> Path:
    """Path of an installed, verified model; raise ModelError saying how to fix it if not."""
    result = verify_file(entry, models_dir)
    if result.state is FileState.MISSING:
        raise ModelError(
            f"model {entry.name}: {result.path} is missing; run "
            "`ringwatch models install --from DIR|URL`"
        )
    if result.state is FileState.TAMPERED:
        raise ModelError(_mismatch(entry, result.path, result.actual_sha256))
    return result.path


def _mismatch(entry: ModelEntry, where: Path | str, actual: str | None) -> str:
    return (
        f"model {entry.name}: {where} fails its checksum (expected sha256 {entry.sha256}, "
        f"got {actual}); the file is corrupt or was tampered with"
    )


def install(
    manifest: Manifest, source: str, models_dir: Path, names: Iterable[str] | None = None
) -> list[Path]:
    """Copy each model from ``source`` (folder or http(s) URL) into ``models_dir``.

    A file is verified before it replaces anything; one already installed and intact is
    kept once the source is seen to hold the same file. Raise :class:`ModelError` for a
    missing source, or a missing, unreachable or mismatching file.
    """
    return [path for path, _ in install_each(manifest, source, models_dir, names)]


INSTALLED = "installed"
ALREADY = "already installed, verified"


def install_each(
    manifest: Manifest, source: str, models_dir: Path, names: Iterable[str] | None = None
) -> Iterator[tuple[Path, str]]:
    """Like :func:`install`, one ``(path, INSTALLED | ALREADY)`` at a time (for progress).

    The source and the names are checked at the call, before anything is copied.
    """
    _check_source(source)
    wanted = set(names) if names is not None else set(manifest.names())
    unknown = sorted(wanted - set(manifest.names()))
    if unknown:
        known = ", ".join(manifest.names())
        raise ModelError(f"unknown model(s) {', '.join(unknown)}; the manifest has {known}")
    models_dir.mkdir(parents=True, exist_ok=True)
    return _install_wanted(manifest, source, models_dir, wanted)


def _install_wanted(
    manifest: Manifest, source: str, models_dir: Path, wanted: set[str]
) -> Iterator[tuple[Path, str]]:
    for entry in manifest.models:
        if entry.name not in wanted:
            continue
        if verify_file(entry, models_dir).state is FileState.OK:
            _verify_source(entry, source)
            yield models_dir / entry.file, ALREADY
        else:
            _install_one(entry, source, models_dir)
            yield models_dir / entry.file, INSTALLED


def _is_url(source: str) -> bool:
    return source.startswith(("http://", "https://"))


def _check_source(source: str) -> None:
    if _is_url(source):
        return
    folder = Path(source).expanduser()
    if not folder.is_dir():
        what = "is a file, not a folder" if folder.exists() else "does not exist"
        raise ModelError(
            f"models source {source} {what}; pass --from with the folder holding the .onnx "
            "files or an http(s):// mirror URL"
        )


def _verify_source(entry: ModelEntry, source: str) -> None:
    """An installed file is kept only if the source still offers the same file."""
    if _is_url(source):
        url = source.rstrip("/") + "/" + entry.file
        request = urllib.request.Request(url, method="HEAD")
        try:
            with urllib.request.urlopen(request, timeout=30):
                return
        except urllib.error.HTTPError as exc:
            raise ModelError(f"model {entry.name}: {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"model {entry.name}: cannot reach {url}: {reason}") from None
    src = Path(source).expanduser() / entry.file
    if not src.is_file():
        raise ModelError(f"model {entry.name}: {src} not found in {source}")
    actual = sha256_of(src)
    if actual != entry.sha256:
        raise ModelError(_mismatch(entry, src, actual))


def _install_one(entry: ModelEntry, source: str, models_dir: Path) -> None:
    with tempfile.NamedTemporaryFile(dir=models_dir, prefix=".part-", delete=False) as tmp:
        tmp_path = Path(tmp.name)
    try:
        where = _fetch(entry, source, tmp_path)
        actual = sha256_of(tmp_path)
        if actual != entry.sha256:
            raise ModelError(_mismatch(entry, where, actual))
        tmp_path.replace(models_dir / entry.file)
    finally:
        tmp_path.unlink(missing_ok=True)


def _fetch(entry: ModelEntry, source: str, dest: Path) -> str:
    if source.startswith(("http://", "https://")):
        url = source.rstrip("/") + "/" + entry.file
        try:
            with urllib.request.urlopen(url, timeout=30) as resp, dest.open("wb") as out:
                shutil.copyfileobj(resp, out, _CHUNK)
        except urllib.error.HTTPError as exc:
            raise ModelError(f"model {entry.name}: {url}: HTTP {exc.code} {exc.reason}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ModelError(f"model {entry.name}: cannot download {url}: {reason}") from None
        return url
    src = Path(source).expanduser() / entry.file
    if not src.is_file():
        raise ModelError(f"model {entry.name}: {src} not found in {source}")
    shutil.copyfile(src, dest)
    return str(src)
