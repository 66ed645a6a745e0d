"""Shared by the scripts that write a docs page from the code (cli_reference.py, api_reference.py): write the
page, or with --check say it is out of date and which command renews it."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def write_or_check(argv: list[str] | None, description: str, out: Path, page: Callable[[str], str], source: str,
                   command: str) -> int:
    """`page(current text) -> new text` for the page at --out (default `out`); --check: exit 1 if they differ."""
    args = argparse.ArgumentParser(description=description)
    args.add_argument("--check", action="store_true", help=f"exit 1 if {out.name} is out of date; write nothing")
    args.add_argument("--out", type=Path, default=out, help=f"the page to write (default {out.name})")
    opts = args.parse_args(argv)
    current = opts.out.read_text(encoding="utf-8") if opts.out.is_file() else ""
    text = page(current)
    if opts.check:
        if current != text:
            print(f"{opts.out} is out of date with {source}; run: {command}", file=sys.stderr)
            return 1
        return 0
    opts.out.write_text(text, encoding="utf-8")
    print(f"wrote {opts.out}")
    return 0
