"""Write docs/cli.md, the command line reference, from the argparse parsers of `dunet.cli.build_parser()`.

    python tools/cli_reference.py            # rewrite docs/cli.md
    python tools/cli_reference.py --check    # exit 1 if docs/cli.md differs from what the parsers give

Every command, subcommand, argument, default and help text comes from the parsers themselves, so the page
cannot drift from the code: tests/tools/test_cli_reference.py fails when it is out of date.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # tools/, also when a test loads this file
from generated_page import write_or_check  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "cli.md"
COMMAND = "python tools/cli_reference.py"

HEADER = f"""# Command line reference

Generated from the argument parsers of `dunet` (`dunet.cli.build_parser()`) by `{COMMAND}`; do not
edit it by hand: `tests/tools/test_cli_reference.py` fails when this page and the parsers disagree. The same
text is printed by `dunet COMMAND --help`. Guides that put these commands to work: [getting started](getting_started.md),
[faces](faces.md), [pose](pose.md), [your own keypoints](own_keypoints.md), [deployment](deployment.md).
"""


def _cell(text: str) -> str:
    """One Markdown table cell: no line breaks, no bare pipes."""
    return " ".join(str(text).split()).replace("|", "\\|")


def _help(parser: argparse.ArgumentParser, action: argparse.Action) -> str:
    if not action.help or action.help == argparse.SUPPRESS:
        return ""
    return parser._get_formatter()._expand_help(action)  # expands %(default)s and %% as --help does


def _metavar(action: argparse.Action) -> str:
    if action.metavar is not None:
        return action.metavar if isinstance(action.metavar, str) else " ".join(action.metavar)
    if action.option_strings:
        return action.dest.upper()
    return action.dest.upper()


def _flag(action: argparse.Action) -> str:
    if isinstance(action, argparse.BooleanOptionalAction) or action.nargs == 0:
        return ", ".join(f"`{s}`" for s in action.option_strings)
    meta = _metavar(action)
    if action.choices is not None and action.metavar is None:
        meta = "{" + ",".join(str(c) for c in action.choices) + "}"
    return ", ".join(f"`{s} {meta}`" for s in action.option_strings)


def _positional(action: argparse.Action) -> str:
    meta = _metavar(action)
    return {"?": f"[{meta}]", "*": f"[{meta} ...]", "+": f"{meta} ..."}.get(action.nargs, meta)


def _default(action: argparse.Action) -> str:
    if action.nargs == 0 and not isinstance(action, argparse.BooleanOptionalAction):
        return ""  # a switch: off unless given
    if action.default is None or action.default == argparse.SUPPRESS or action.default == []:
        return ""
    return f"`{action.default}`"


def _subparsers(parser: argparse.ArgumentParser) -> argparse._SubParsersAction | None:
    return next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)


def _summaries(sub: argparse._SubParsersAction) -> dict[str, str]:
    return {choice.dest: choice.help or "" for choice in sub._choices_actions}


def _section(name: str, parser: argparse.ArgumentParser, summary: str, level: int) -> list[str]:
    lines = [f"{'#' * level} `{name}`", ""]
    if summary:
        lines += [summary[0].upper() + summary[1:] + ("" if summary.endswith(".") else "."), ""]
    if parser.description:
        lines += [parser.description.strip(), ""]
    sub = _subparsers(parser)
    positionals = [a for a in parser._actions if not a.option_strings and not isinstance(a, argparse._SubParsersAction)]
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)
               and a.help != argparse.SUPPRESS]
    synopsis = [name]
    if sub is not None:
        synopsis.append("{" + ",".join(sub.choices) + "} ...")
    if options:
        synopsis.append("[OPTIONS]")
    synopsis += [_positional(a) for a in positionals]
    lines += ["```", " ".join(synopsis), "```", ""]
    if positionals or options:
        lines += ["| argument | default | what it does |", "|---|---|---|"]
        for action in positionals:
            lines.append(f"| `{_positional(action)}` | | {_cell(_help(parser, action))} |")
        for action in options:
            required = " (required)" if action.required else ""
            lines.append(f"| {_flag(action)}{required} | {_cell(_default(action))} | {_cell(_help(parser, action))} |")
        lines.append("")
    if parser.epilog:
        lines += [parser.epilog.strip(), ""]
    if sub is not None:
        summaries = _summaries(sub)
        for child, child_parser in sub.choices.items():
            lines += _section(f"{name} {child}", child_parser, summaries.get(child, ""), level + 1)
    return lines


def render() -> str:
    sys.path.insert(0, str(ROOT))
    from dunet.cli import build_parser

    parser = build_parser()
    sub = _subparsers(parser)
    summaries = _summaries(sub)
    lines = [HEADER, "## `dunet`", "", "```", f"dunet [--version] {{{','.join(sub.choices)}}} ...", "```", "",
             "| command | what it does |", "|---|---|"]
    lines += [f"| [`dunet {c}`](#dunet-{c}) | {_cell(summaries.get(c, ''))} |" for c in sub.choices]
    lines.append("")
    for name, child in sub.choices.items():
        lines += _section(f"dunet {name}", child, summaries.get(name, ""), 2)
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    return write_or_check(argv, __doc__.splitlines()[0], OUT, lambda current: render(), "the parsers of dunet.cli", COMMAND)


if __name__ == "__main__":
    sys.exit(main())
