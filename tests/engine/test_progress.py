"""One progress bar for a whole training run (dunet/engine/progress.RunProgress)."""

from __future__ import annotations

import sys

import torch

from dunet.engine.progress import RunProgress


def _epochs(bar: RunProgress, epochs: int = 2, batches: int = 3) -> None:
    for epoch in range(epochs):
        for _ in bar.batches([torch.zeros(4, 3)] * batches, f"epoch {epoch + 1}/{epochs}"):
            pass
        bar.write(f"epoch {epoch + 1}/{epochs}: done")
    bar.close()


def test_in_a_log_the_run_reports_its_images_and_time_left_across_epochs():
    lines = []
    bar = RunProgress(log=lines.append, every=0.0)
    bar.start(24)
    _epochs(bar)
    progress = [line for line in lines if "images of the run" in line]
    assert progress[0].startswith("epoch 1/2: 4/24 images of the run") and progress[0].endswith(" left")
    assert any(line.startswith("epoch 2/2: 16/24 images of the run") for line in progress)  # counts on over epochs
    assert "epoch 1/2: done" in lines and "epoch 2/2: done" in lines


def test_on_a_terminal_one_bar_spans_the_run_and_lines_go_above_it(monkeypatch, capsys):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    lines = []
    bar = RunProgress(log=lines.append)
    bar.start(24)
    assert bar.bar is not None and bar.bar.total == 24
    _epochs(bar)
    assert lines == ["epoch 1/2: done", "epoch 2/2: done"]  # no progress lines: the bar shows it
    assert "24/24" in capsys.readouterr().err


def test_a_process_that_does_not_own_the_run_reports_nothing(capsys):
    lines = []
    bar = RunProgress(log=lines.append, every=0.0, enabled=False)
    bar.start(24)
    _epochs(bar)
    assert lines == ["epoch 1/2: done", "epoch 2/2: done"] and capsys.readouterr().err == ""
