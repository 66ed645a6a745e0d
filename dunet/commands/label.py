"""`dunet label`: label a project's frames in the browser (a local page; every change saved at once)."""

from __future__ import annotations

import argparse


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("label", help="label a project's frames in your browser (local page, autosaved)")
    p.add_argument("project", metavar="PROJECT", help="a project folder (`dunet project new`, or DeepLabCut's)")
    p.add_argument("--port", type=int, default=8042, help="port on 127.0.0.1 (default 8042; 0: any free port)")
    p.add_argument("--model", metavar="RUN_OR_NAME", help="pre-fill unlabelled points with this model's predictions")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import signal
    import sys

    from dunet import DunetError
    from dunet.labeller import serve

    # `kill` stops it as Ctrl-C does: the lock file goes with it (every change is already saved).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))

    if not 0 <= args.port <= 65535:
        raise DunetError(f"--port {args.port}: expected 0 to 65535")
    try:
        serve(args.project, args.port, args.model, ready=lambda message: print(message, flush=True))
    except KeyboardInterrupt:
        print("stopped; the labels are saved")
    return 0
