"""``ringwatch models install|list|verify``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ringwatch.models.install import FileState, install_each, verify_all
from ringwatch.models.licences import licence_notes
from ringwatch.models.manifest import default_models_dir, load_manifest
from ringwatch.table import render_table


def register(sub: Any) -> None:
    parser = sub.add_parser("models", help="install, list and verify model files")
    msub = parser.add_subparsers(dest="models_command", required=True, metavar="ACTION")
    dir_help = "models folder (default: $RINGWATCH_MODELS or ~/.cache/ringwatch/models)"

    p = msub.add_parser("install", help="copy models from a folder or HTTP mirror and verify")
    p.add_argument("--from", dest="source", required=True, help="folder or http(s) URL")
    p.add_argument("--dir", type=Path, default=None, help=dir_help)
    p.add_argument("names", nargs="*", help="only these models (default: all)")
    p.set_defaults(func=_install)

    p = msub.add_parser("list", help="table of models with licences and install state")
    p.add_argument("--dir", type=Path, default=None, help=dir_help)
    p.set_defaults(func=_list)

    p = msub.add_parser("verify", help="check every installed file against its sha256")
    p.add_argument("--dir", type=Path, default=None, help=dir_help)
    p.set_defaults(func=_verify)


def _install(args: argparse.Namespace) -> int:
    from ringwatch.progress import progress

    target = args.dir or default_models_dir()
    manifest = load_manifest()
    count = len(args.names) if args.names else len(manifest.models)
    done = []
    each = install_each(manifest, args.source, target, args.names or None)
    with progress(f"models from {args.source}", total=count, unit="files") as advance:
        for path, outcome in each:
            done.append(f"{outcome}: {path}")
            advance(1)
    for line in done:
        print(line)
    return 0


def _list(args: argparse.Namespace) -> int:
    manifest = load_manifest()
    results = verify_all(manifest, args.dir or default_models_dir())
    rows = [
        (r.entry.name, r.entry.task, r.entry.file, r.entry.licence_label, r.state.value)
        for r in results
    ]
    print(render_table(("name", "task", "file", "licence", "installed"), rows))
    for note in licence_notes(manifest.models):
        print(f"\n{note}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    target = args.dir or default_models_dir()
    results = verify_all(load_manifest(), target)
    rows = [(r.entry.name, r.path, r.state.value) for r in results]
    print(render_table(("name", "path", "state"), rows))
    bad = [r for r in results if r.state is not FileState.OK]
    for r in bad:
        detail = f" (expected {r.entry.sha256}, got {r.actual_sha256})" if r.actual_sha256 else ""
        print(f"FAIL {r.entry.name}: {r.path}: {r.state.value}{detail}")
    return 1 if bad else 0
