"""The `dunet` command. Each subcommand lives in `dunet/commands/<name>.py` with
`add_parser(subparsers)` registering it and setting `func(args) -> int`."""

from __future__ import annotations

import argparse
import importlib
import sys

from dunet import DunetError, __version__

COMMANDS = ["info", "data", "train", "eval", "predict", "export", "models", "demo"]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dunet", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--version", action="version", version=f"dunet {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"dunet.commands.{name}")
        except ModuleNotFoundError as err:
            if err.name == f"dunet.commands.{name}":
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except DunetError as err:
        print(f"dunet {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"dunet {args.command}: interrupted", file=sys.stderr)
        return 130
