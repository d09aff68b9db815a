"""The ``ringwatch`` command. Each part registers its own subcommands; heavy imports
(cv2, onnxruntime, paho, fastapi) happen inside the handlers, never at start-up."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from ringwatch import __version__
from ringwatch.errors import RingwatchError

DESCRIPTION = (
    "Ringwatch: edge video analytics for school campuses and e-bike sheds, and the hub "
    "that turns their alerts into incidents."
)
EXAMPLES = """examples:
  ringwatch demo                                    everything on this machine; prints the URL
  ringwatch models install --from ../shared/models  install and verify the model files
  ringwatch edge validate -c configs/site-campus.yaml
  ringwatch edge check -c configs/site-campus.yaml  cameras, models and broker, in a table
  ringwatch edge run -c site.yaml                   the camera-box agent
  ringwatch analyze clip.mp4 --fps 2                one JSON line per analysed frame
  ringwatch hub serve --settings configs/hub.yaml --config configs/hub-sites.yaml

`ringwatch COMMAND --help` shows each command's options."""


def build_parser() -> argparse.ArgumentParser:
    from ringwatch import demo
    from ringwatch.edge import cli as edge_cli
    from ringwatch.edge import faces_cli, perception_cli, sim_cli
    from ringwatch.hub import cli as hub_cli
    from ringwatch.models import cli as models_cli

    parser = argparse.ArgumentParser(
        prog="ringwatch",
        description=DESCRIPTION,
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"ringwatch {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    models_cli.register(sub)
    edge_cli.register(sub)
    perception_cli.register(sub)
    faces_cli.register(sub)
    sim_cli.register(sub)
    hub_cli.register(sub)
    demo.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except RingwatchError as exc:
        print(f"ringwatch: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code


if __name__ == "__main__":
    sys.exit(main())
