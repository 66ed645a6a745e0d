"""The runnable snippets of the user documentation: README.md and docs/*.md (docs/research/ is a lab notebook,
not instructions). A ```python block is one snippet; in a ```bash / ```sh / ```console block each command that
starts with `dunet` is one (a console block's commands are its `$ ` lines). `<!-- not run: REASON -->` on the
line before a block marks it as an illustration that is not run."""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SHELLS = ("bash", "sh", "console")
FENCE = re.compile(r"^```(\w*)\s*$")
NOT_RUN = re.compile(r"^<!--\s*not run:\s*(.+?)\s*-->$")


@dataclass(frozen=True)
class Snippet:
    page: str  # the page's path from the repository root, e.g. "docs/faces.md"
    line: int  # 1-based line of the snippet in the page
    kind: str  # "python" or "cli"
    text: str  # the Python source, or the command line
    not_run: str = ""  # the reason given by a `not run` marker

    @property
    def id(self) -> str:
        return f"{self.page}:{self.line}"

    @property
    def argv(self) -> list[str]:
        """The command's arguments after `dunet`, without `[optional parts]` (the docs' notation)."""
        words, optional = [], False
        for word in shlex.split(self.text, comments=True)[1:]:
            optional = optional or word.startswith("[")
            if not optional:
                words.append(word)
            optional = optional and not word.endswith("]")
        return words


def pages() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def page_snippets(path: Path, page: str = "") -> list[Snippet]:
    page = page or path.relative_to(REPO).as_posix()
    lines = path.read_text(encoding="utf-8").splitlines()
    found, i = [], 0
    while i < len(lines):
        fence = FENCE.match(lines[i])
        if not fence:
            i += 1
            continue
        end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
        before = next((lines[j].strip() for j in range(i - 1, -1, -1) if lines[j].strip()), "")
        marker = NOT_RUN.match(before)
        reason = marker.group(1) if marker else ""
        lang, body = fence.group(1), lines[i + 1:end]
        if lang == "python":
            found.append(Snippet(page, i + 2, "python", "\n".join(body), reason))
        elif lang in SHELLS:
            found += [Snippet(page, line, "cli", command, reason)
                      for line, command in _commands(body, i + 2, console=lang == "console")]
        i = end + 1
    return found


def _commands(body: list[str], first_line: int, console: bool):
    """(line, command) for each `dunet` command of a shell block; continued lines joined, `&&` chains split."""
    text, start, heredoc = "", None, None
    for number, raw in enumerate(body, first_line):
        if heredoc is not None:  # a here-document's lines are another program's input
            heredoc = None if raw.strip() == heredoc else heredoc
            continue
        line = raw.strip()
        if console and start is None:
            if not line.startswith("$ "):
                continue
            line = line[2:]
        start = number if start is None else start
        if line.endswith("\\"):
            text += line[:-1] + " "
            continue
        text += line
        ends = re.search(r"<<-?\s*'?(\w+)'?", text)
        heredoc = ends.group(1) if ends else None
        for command in text.split(" && "):
            if command.strip().startswith("dunet "):
                yield start, command.strip()
        text, start = "", None


def all_snippets() -> list[Snippet]:
    return [snippet for path in pages() for snippet in page_snippets(path)]
