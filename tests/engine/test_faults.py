"""A training killed outright (SIGKILL: no handler, no `finally` runs) at random points resumes to the very
weights of an uninterrupted run: every checkpoint write is atomic and `last/` is written after the rest
of its epoch, and training depends only on (seed, epoch, index)."""

import os
import signal
import time

import numpy as np
import pytest

from dunet.engine.trainer import resumed_config, train
from tests.engine.test_trainer import fast_config, same_run

EPOCHS = 4


def _train_or_resume(run):
    if (run / "last").exists() or (run / ".last.old").exists():  # .old: killed between a save's renames
        train(resumed_config(run, []), run, resume=True, log=lambda *_: None)
    else:
        train(fast_config(**{"optim.epochs": EPOCHS}), run, log=lambda *_: None)


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_sigkill_at_random_points_then_resume_is_bit_identical(tmp_path):
    straight = tmp_path / "straight"
    train(fast_config(**{"optim.epochs": 1}), tmp_path / "warm-up", log=lambda *_: None)
    started = time.monotonic()
    train(fast_config(**{"optim.epochs": EPOCHS}), straight, log=lambda *_: None)
    epoch = (time.monotonic() - started) / EPOCHS

    run, rng, killed = tmp_path / "run", np.random.default_rng(0), 0
    for _ in range(4):
        pid = os.fork()  # a copy of this process, torch already imported: a second's start, not ten
        if pid == 0:
            code = 1
            try:
                _train_or_resume(run)
                code = 0
            finally:
                os._exit(code)
        time.sleep(rng.uniform(0.0, 2 * epoch))  # anywhere in start-up, a step, validation or a save
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        _, status = os.waitpid(pid, 0)
        killed += os.WIFSIGNALED(status)
    assert killed, "every run ended before it could be killed"
    _train_or_resume(run)
    same_run(straight, run)
