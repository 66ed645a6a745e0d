"""Learning-rate schedules written as fractions of the run keep their shape when the epochs change."""

from __future__ import annotations

import pytest

from dunet.engine.config import load_config
from dunet.engine.trainer import Trainer


def test_fractions_follow_the_number_of_epochs_and_epoch_numbers_stay():
    for epochs, expected in ((10, [6, 8]), (100, [60, 80])):
        optim = load_config(None, [f"optim.epochs={epochs}", "optim.milestones=[0.6, 0.8]",
                                   "optim.gammas=[0.1, 0.5]"]).optim
        assert optim.milestone_epochs() == expected
        first, second = expected
        assert optim.lr_at(first - 1) == optim.lr
        assert optim.lr_at(first) == pytest.approx(optim.lr * 0.1)
        assert optim.lr_at(second) == pytest.approx(optim.lr * 0.05)
    fixed = load_config(None, ["optim.epochs=10", "optim.milestones=[3]", "optim.gammas=[0.5]"]).optim
    assert fixed.milestone_epochs() == [3]


def test_a_milestone_past_the_last_epoch_is_reported(tiny_config, tmp_path):
    lines = []
    cfg = load_config(tiny_config, ["optim.epochs=2", "optim.milestones=[5]", "optim.gammas=[0.5]"])
    Trainer(cfg, tmp_path / "run", log=lines.append)
    assert any("milestone(s) [5] are not before the last epoch (2)" in line for line in lines)


def test_options_document_every_key_in_one_line():
    from dunet.engine.config import describe_options

    lines = describe_options().splitlines()
    assert len(lines) > 40 and all(": " in line and line.split(": ", 1)[1].strip() for line in lines), \
        [line for line in lines if not line.split(": ", 1)[-1].strip()]
    assert any(line.startswith("optim.milestones = (0.3, 0.6, 0.9): ") and "fraction of the run" in line
               for line in lines)
