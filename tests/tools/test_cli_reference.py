"""docs/cli.md is generated from the argparse parsers by tools/cli_reference.py: it must match them, so a renamed
flag or a changed default shows up here instead of in a user's terminal."""

from __future__ import annotations

from tests.tools.helpers import load_tool


def test_docs_cli_md_matches_the_parsers():
    tool = load_tool("cli_reference")
    current = tool.OUT.read_text(encoding="utf-8") if tool.OUT.is_file() else ""
    assert current == tool.render(), f"docs/cli.md is out of date with dunet.cli's parsers; run: {tool.COMMAND}"


def test_every_command_and_flag_is_in_the_reference():
    import argparse

    from dunet.cli import build_parser

    text = load_tool("cli_reference").render()
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    for name, child in sub.choices.items():
        assert f"## `dunet {name}`" in text
        for action in child._actions:
            for flag in action.option_strings:
                if flag not in ("-h", "--help"):
                    assert f"`{flag}" in text, f"dunet {name} {flag} is missing from docs/cli.md"


def test_check_mode_names_the_command_to_run(tmp_path, capsys):
    tool = load_tool("cli_reference")
    stale = tmp_path / "cli.md"
    stale.write_text("old\n", encoding="utf-8")
    assert tool.main(["--check", "--out", str(stale)]) == 1
    assert "python tools/cli_reference.py" in capsys.readouterr().err
    assert tool.main(["--out", str(stale)]) == 0
    assert tool.main(["--check", "--out", str(stale)]) == 0
