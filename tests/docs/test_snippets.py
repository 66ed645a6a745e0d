"""Every command and Python example of the documentation runs (tests/docs/snippets.py finds them). Each page runs
in its own folder, in page order, as a reader following it would: a test runs the page's earlier snippets first
(once per session), so it also passes alone. The inputs a page names come from tests/docs/inputs.py; a
`runs/NAME` comes from the page snippet that trains it. Training runs one short epoch on a few samples: the
recipes themselves are tested in tests/engine."""

from __future__ import annotations

import contextlib
import io
import re
import shutil
import textwrap
import traceback
from pathlib import Path

import pytest

from dunet.cli import main
from tests.docs.inputs import PAGE_INPUTS, make_root
from tests.docs.snippets import REPO, Snippet, all_snippets, page_snippets

SNIPPETS = all_snippets()
# Words of the pages that stand for the reader's own: what they become here.
PLACEHOLDERS = {"/path/to/300w": "300w", "model.landmarks=K": "model.landmarks=17"}
# A training command runs one short epoch, on one thread, whatever its recipe; small batches also make the own-data
# recipe's timing of its network quick.
QUICK_TRAINING = ["--set", "optim.epochs=1", "--set", "optim.batch_size=2", "--set", "threads=1",
                  "--set", "data.workers=0", "--set", "eval_every=1"]
# Commands that do not return by themselves.
NOT_RUN_COMMANDS = {"label": "serves the labeller until stopped; tests/project/test_labeller.py drives it"}


class Pages:
    """The folders the pages run in, and what each snippet gave (run once per session)."""

    def __init__(self, root: Path):
        self.root, self.results = root, {}
        self.trained = {}  # run folder -> the training command that made it

    def folder(self, page: str) -> Path:
        folder = self.root / page.replace("/", "_").removesuffix(".md")
        if not folder.exists():
            folder.mkdir()
            inputs = self.root / "inputs"
            for entry in inputs.iterdir():
                (folder / entry.name).symlink_to(entry)
            if page in PAGE_INPUTS:
                PAGE_INPUTS[page](inputs, folder)
        return folder

    def run(self, snippet: Snippet) -> tuple[bool, str]:
        """(passed, what it printed or raised): the page's earlier snippets first, then this one."""
        if snippet not in self.results:
            for earlier in SNIPPETS[:SNIPPETS.index(snippet)]:
                if earlier.page == snippet.page and skip_reason(earlier) is None:
                    self.run(earlier)
            self.results[snippet] = self._run(snippet)
        return self.results[snippet]

    def _run(self, snippet: Snippet) -> tuple[bool, str]:
        for run in runs_named(snippet):
            self.make_run(run)
        output = io.StringIO()
        with contextlib.chdir(self.folder(snippet.page)), \
                contextlib.redirect_stdout(output), contextlib.redirect_stderr(output):
            try:
                passed = self._python(snippet) if snippet.kind == "python" else self._cli(snippet)
            except Exception:  # the failure is reported with what the snippet printed
                return False, output.getvalue() + traceback.format_exc()
        return passed, output.getvalue()

    @staticmethod
    def _python(snippet: Snippet) -> bool:
        code = "\n" * (snippet.line - 1) + substituted(snippet.text)  # so that tracebacks give the page's lines
        exec(compile(code, str(REPO / snippet.page), "exec"), {"__name__": "__main__"})
        return True

    def _cli(self, snippet: Snippet) -> bool:
        argv = command(snippet)
        out = trained_run(argv)
        if out is not None and self.trained.get(out) == argv:
            return True  # pages repeat the same training command
        if out is not None and out.exists():
            shutil.rmtree(out)  # an alternative command trained it: train it again
        try:
            passed = main(argv) == 0
        except SystemExit as exit:  # argparse's --version and --help
            passed = exit.code == 0
        if out is not None:
            self.trained[out] = argv if passed else None
        return passed

    def make_run(self, name: str) -> None:
        """runs/NAME, from the first snippet of the docs that trains it."""
        if (self.root / "inputs" / "runs" / name).exists():
            return
        trains = [s for s in SNIPPETS if s.kind == "cli" and trained_run(command(s)) == Path("runs", name)]
        producer = trains[0] if trains else None
        assert producer is not None, f"no page trains runs/{name}"
        passed, output = self.run(producer)
        assert passed, f"{producer.id} (which trains runs/{name}) failed:\n{output[-3000:]}"


def substituted(text: str) -> str:
    for word, value in PLACEHOLDERS.items():
        text = text.replace(word, value)
    return text


def command(snippet: Snippet) -> list[str]:
    argv = [substituted(word) for word in snippet.argv]
    if argv[:1] == ["train"]:
        argv += QUICK_TRAINING
        if "--data" in argv and "--init" not in argv:
            # The own-data recipe times the network at 256 px first and keeps that size when --minutes allows (the
            # default 10 do): one timing, then 128 px to train. (--init keeps the earlier run's size.)
            argv += ["--set", "model.input_size=128"]
    return argv


def trained_run(argv: list[str]) -> Path | None:
    """The run folder a `train` command writes (its --out, else runs/<recipe name>)."""
    if argv[:1] != ["train"]:
        return None
    if "--out" in argv:
        return Path(argv[argv.index("--out") + 1])
    recipe = next((word for word in argv[1:] if word.endswith(".yaml")), None)
    return Path("runs", Path(recipe).stem) if recipe else None


def runs_named(snippet: Snippet) -> list[str]:
    """The runs/NAME a snippet uses (not the one it trains)."""
    words = command(snippet) if snippet.kind == "cli" else [snippet.text]
    made = trained_run(words) if snippet.kind == "cli" else None
    names = {name for word in words for name in re.findall(r"\bruns/([\w.-]+)", word)}
    return sorted(name for name in names if made is None or made != Path("runs", name))


def skip_reason(snippet: Snippet) -> str | None:
    if snippet.not_run:
        return f"not run: {snippet.not_run}"
    if snippet.kind == "cli" and snippet.argv[:1] and snippet.argv[0] in NOT_RUN_COMMANDS:
        return NOT_RUN_COMMANDS[snippet.argv[0]]
    return None


def snippet_id(snippet: Snippet) -> str:
    what = "python" if snippet.kind == "python" else f"dunet {' '.join(snippet.argv[:1])}".strip()
    return f"{snippet.id} {what}"


@pytest.fixture(scope="session")
def pages(shared_data, tmp_path_factory) -> Pages:
    root = tmp_path_factory.mktemp("docs")
    make_root(shared_data, root)
    return Pages(root)


def marks(snippet: Snippet) -> list:
    return [pytest.mark.slow] if snippet.kind == "cli" and snippet.argv[:1] == ["train"] else []


@pytest.mark.parametrize("snippet", [pytest.param(s, id=snippet_id(s), marks=marks(s)) for s in SNIPPETS])
def test_snippet_runs(snippet: Snippet, pages: Pages):
    reason = skip_reason(snippet)
    if reason:
        pytest.skip(reason)
    passed, output = pages.run(snippet)
    assert passed, f"{snippet.id}: {snippet.text.splitlines()[0]} ... failed:\n{output[-3000:]}"


def test_every_page_is_read():
    """The extraction finds the snippets of the pages (a change of fence style must not silence the test)."""
    found = {snippet.page for snippet in SNIPPETS}
    assert {"README.md", "docs/getting_started.md", "docs/faces.md", "docs/pose.md"} <= found


def test_extraction_rules(tmp_path):
    """What counts as a snippet, and where it is: continued lines, `&&` chains, [optional] words, markers."""
    page = tmp_path / "page.md"
    page.write_text(textwrap.dedent("""
        ```bash
        pip install .
        dunet predict photo.jpg \\
            --out preds   # overlays
        dunet project new mouse [--scorer Ana] && dunet label mouse
        ```
        <!-- not run: needs a GPU -->
        ```python
        import dunet
        ```
        ```console
        $ dunet models
        face: 300w-dunet2-w80
        ```
        """))
    found = [(s.line, s.kind, s.argv if s.kind == "cli" else s.text, s.not_run) for s in page_snippets(page, "page.md")]
    assert found == [(4, "cli", ["predict", "photo.jpg", "--out", "preds"], ""),
                     (6, "cli", ["project", "new", "mouse"], ""), (6, "cli", ["label", "mouse"], ""),
                     (10, "python", "import dunet", "needs a GPU"), (13, "cli", ["models"], "")]
