"""``ringwatch edge ...``: the technician's commands for a camera box."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from ringwatch.edge.config import load_site_config
from ringwatch.table import render_table


def register(sub: Any) -> None:
    parser = sub.add_parser("edge", help="edge agent commands")
    esub = parser.add_subparsers(dest="edge_command", required=True, metavar="ACTION")
    p = esub.add_parser("validate", help="validate an edge site config file")
    p.add_argument("-c", "--config", type=Path, required=True, help="site YAML file")
    p.set_defaults(func=_validate)


def _validate(args: argparse.Namespace) -> int:
    cfg = load_site_config(args.config)
    rows = [
        (
            cam.id,
            cam.role.value,
            cam.source,
            f"{cam.fps:g}",
            ",".join(z.role.value for z in cam.zones) or "-",
            len(cam.lines),
            len(cam.masks),
        )
        for cam in cfg.cameras
    ]
    print(f"{args.config}: site {cfg.site}, device {cfg.device}: OK")
    print(render_table(("camera", "role", "source", "fps", "zones", "lines", "masks"), rows))
    return 0
