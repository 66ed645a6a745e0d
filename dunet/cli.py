"""dunet finds landmarks (face points, body joints, animal body parts) in images and videos with DU-Net models.

Start with `dunet models` (pretrained models), `dunet predict --model NAME IMAGES_OR_VIDEOS`, or train your
own: `dunet train RECIPE.yaml`, `dunet eval`, `dunet export`. Your own keypoints: `dunet project new`, `dunet label`
(in the browser), `dunet train --data`. From Python: `dunet.load(NAME).predict(IMAGE)`.
"""

# Each subcommand lives in dunet/commands/<name>.py: add_parser(subparsers) registers it and sets func(args) -> int.

from __future__ import annotations

import argparse
import importlib
import sys
import warnings

from dunet import DunetError, __version__

COMMANDS = ["info", "data", "project", "frames", "label", "train", "eval", "predict", "analyse", "outliers",
            "export", "models", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dunet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="`dunet COMMAND --help` for a command's options; docs/api.md for Python.")
    parser.add_argument("--version", action="version", version=f"dunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        importlib.import_module(f"dunet.commands.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # A warning is one line, as an error is (Python's own format adds the file, line and source text).
    previous = warnings.formatwarning
    warnings.formatwarning = lambda message, *_, **__: f"dunet {args.command}: warning: {message}\n"
    try:
        return int(args.func(args) or 0)
    except DunetError as err:
        print(f"dunet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dunet {args.command}: interrupted", file=sys.stderr)
        return 130
    except ModuleNotFoundError as err:  # a command of the training side, run in the runtime install
        from dunet.runtime.backends import missing_package_line

        line = missing_package_line(err.name or "")
        if line is None:
            raise
        print(f"dunet {args.command}: error: {line}", file=sys.stderr)
        return 2
    finally:
        warnings.formatwarning = previous
