import pytest
import torch

from dunet import DunetError
from dunet.checkpoint import load_checkpoint
from dunet.engine import trainer as trainer_module
from dunet.engine.config import load_config
from dunet.engine.trainer import evenly_spaced, resumed_config, split_indices, train


def weights(run):
    return load_checkpoint(run / "last").state_dict


def test_split_is_deterministic_and_disjoint():
    a, b = split_indices(100, 0.1, 0)
    assert len(b) == 10 and not set(a) & set(b) and sorted(a + b) == list(range(100))
    assert split_indices(100, 0.1, 0) == (a, b)
    assert split_indices(100, 0.1, 1) != (a, b)


def test_evenly_spaced_reaches_the_whole_list():
    indices = list(range(0, 2000, 2))  # e.g. a training split whose files are sorted by source database
    chosen = evenly_spaced(indices, 300)
    assert len(set(chosen)) == 300 and set(chosen) <= set(indices)
    assert chosen[0] == 0 and chosen[-1] > 1980  # not only the first 300
    assert evenly_spaced(indices[:5], 300) == indices[:5]


@pytest.mark.slow
def test_resume_is_exact(tiny_config, tmp_path):
    straight = tmp_path / "straight"
    train(load_config(tiny_config), straight, log=lambda *_: None)
    halves = tmp_path / "halves"
    train(load_config(tiny_config, ["optim.epochs=1"]), halves, log=lambda *_: None)
    train(resumed_config(halves, ["optim.epochs=2"]), halves, resume=True, log=lambda *_: None)
    a, b = weights(straight), weights(halves)
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name
    assert load_checkpoint(halves / "last").train_state["epoch"] == 2
    assert (halves / "log.csv").read_text().count("\n") == 3  # header + 2 epochs
    assert (halves / "curves.png").stat().st_size > 0


def test_weight_average_decay_ramps_up_to_its_cap():
    update = trainer_module.warmed_up_ema(0.9)
    average, values = [torch.tensor([1.0])], [2.0, 4.0, 8.0]
    expected = 1.0
    for n, value in enumerate(values, start=1):
        decay = min(0.9, (1 + n) / (10 + n))
        update(average, [torch.tensor([value])], torch.tensor(n))
        expected = decay * expected + (1 - decay) * value
        assert average[0].item() == pytest.approx(expected)
    update(average, [torch.tensor([0.0])], torch.tensor(1000))  # past the ramp: the cap
    assert average[0].item() == pytest.approx(0.9 * expected)


@pytest.mark.slow
def test_weight_average_is_checkpointed_and_resumes_exactly(tiny_config, tmp_path):
    ema = ["optim.ema=0.9"]
    straight = tmp_path / "straight"
    train(load_config(tiny_config, ema), straight, log=lambda *_: None)
    halves = tmp_path / "halves"
    train(load_config(tiny_config, ["optim.epochs=1", *ema]), halves, log=lambda *_: None)
    train(resumed_config(halves, ["optim.epochs=2"]), halves, resume=True, log=lambda *_: None)
    a, b = load_checkpoint(straight / "last"), load_checkpoint(halves / "last")
    for name in a.state_dict:
        assert torch.equal(a.state_dict[name], b.state_dict[name]), name
        assert torch.equal(a.train_state["raw_weights"][name], b.train_state["raw_weights"][name]), name
    assert a.train_state["ema_count"] == 6  # 3 steps per epoch
    # The model weights are the average: they differ from the raw weights, and they are what validation scored.
    conv = next(n for n, t in a.state_dict.items() if t.dim() == 4)
    assert not torch.equal(a.state_dict[conv], a.train_state["raw_weights"][conv])
    trainer = trainer_module.Trainer(resumed_config(straight, []), straight, resume=True, log=lambda *_: None)
    assert trainer.validate()["nme_io"] == pytest.approx(a.card.provenance["metrics"]["nme_io"])
    with pytest.raises(DunetError, match="trained with optim.ema=0.9; resume with it"):
        trainer_module.Trainer(resumed_config(straight, ["optim.ema=0"]), straight, resume=True)
    with pytest.raises(DunetError, match="ema 1.0: the decay must be in"):
        load_config(tiny_config, ["optim.ema=1.0"])


def test_training_lowers_the_loss(tiny_config, tmp_path):
    run = tmp_path / "run"
    train(load_config(tiny_config, ["optim.epochs=3", "data.train=synthetic:32:0"]), run, log=lambda *_: None)
    rows = (run / "log.csv").read_text().splitlines()[1:]
    losses = [float(r.split(",")[2]) for r in rows]
    assert losses[-1] < 0.5 * losses[0]
    assert (run / "best" / "model.safetensors").exists()


def test_nan_loss_stops_and_keeps_last_good(tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(load_config(tiny_config, ["optim.epochs=1"]), run, log=lambda *_: None)
    good = weights(run)
    monkeypatch.setattr(trainer_module, "total_loss", lambda *a, **k: torch.tensor(float("nan")))
    with pytest.raises(DunetError, match="loss is nan.*last good checkpoint"):
        train(resumed_config(run, ["optim.epochs=2"]), run, resume=True, log=lambda *_: None)
    after = weights(run)
    assert all(torch.equal(good[k], after[k]) for k in good)
    assert load_checkpoint(run / "last").train_state["epoch"] == 1


def test_interrupt_saves_and_resume_continues(tiny_config, tmp_path, monkeypatch):
    run = tmp_path / "run"
    real = trainer_module.total_loss
    calls = {"n": 0}

    def interrupt_on_fourth_step(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", interrupt_on_fourth_step)
    with pytest.raises(KeyboardInterrupt):
        train(load_config(tiny_config), run, log=lambda *_: None)
    assert load_checkpoint(run / "last").train_state["epoch"] == 1  # epoch 2 restarts on resume
    monkeypatch.setattr(trainer_module, "total_loss", real)
    train(resumed_config(run, []), run, resume=True, log=lambda *_: None)
    assert load_checkpoint(run / "last").train_state["epoch"] == 2


def test_a_run_directory_trains_in_one_process_at_a_time(tiny_config, tmp_path):
    run = tmp_path / "run"
    with trainer_module.run_dir_lock(run):  # as a first `dunet train` still running would hold it
        with pytest.raises(DunetError, match=r"another `dunet train` \(pid \d+\) is training in this run directory"):
            train(load_config(tiny_config, ["optim.epochs=1"]), run, log=lambda *_: None)
    assert not (run / "last").exists()
    train(load_config(tiny_config, ["optim.epochs=1"]), run, log=lambda *_: None)  # released: it trains
    assert load_checkpoint(run / "last").train_state["epoch"] == 1


def test_init_starts_from_another_runs_weights(tiny_config, tmp_path):
    first = tmp_path / "first"
    train(load_config(tiny_config, ["optim.epochs=1"]), first, log=lambda *_: None)
    lines = []
    trainer = trainer_module.Trainer(load_config(tiny_config, [f"init={first}"]), tmp_path / "second", log=lines.append)
    start, given = trainer.model.state_dict(), load_checkpoint(first / "best").state_dict
    floats = [name for name in start if start[name].is_floating_point()]
    assert all(torch.equal(start[name], given[name]) for name in floats)
    assert any(line.startswith(f"init: {len(floats)} tensors from {first}") for line in lines)
    with pytest.raises(DunetError, match="no-such-model"):
        trainer_module.Trainer(load_config(tiny_config, ["init=no-such-model"]), tmp_path / "third")


def test_a_teacher_sets_its_share_of_the_targets(tiny_config, tmp_path, monkeypatch):
    teacher = tmp_path / "teacher"
    train(load_config(tiny_config, ["optim.epochs=1"]), teacher, log=lambda *_: None)
    getitem = trainer_module.LandmarkDataset.__getitem__

    def run(name, weight, blank_labels):
        def item(dataset, index):
            sample = getitem(dataset, index)
            if blank_labels:
                sample["heatmaps"] = torch.zeros_like(sample["heatmaps"])
            return sample

        monkeypatch.setattr(trainer_module.LandmarkDataset, "__getitem__", item)
        lines = []
        train(load_config(tiny_config, ["optim.epochs=1", f"teacher={teacher}", f"teacher_weight={weight}"]),
              tmp_path / name, log=lines.append)
        assert any(line.startswith(f"teacher: {teacher / 'best'}") for line in lines)
        return weights(tmp_path / name)

    # All of the target from the teacher: the labels no longer matter. Half of it: they do.
    a, b = run("taught", 1.0, False), run("taught-blank", 1.0, True)
    assert all(torch.equal(a[name], b[name]) for name in a)
    a, b = run("half", 0.5, False), run("half-blank", 0.5, True)
    assert not all(torch.equal(a[name], b[name]) for name in a)


def test_a_teacher_with_other_heatmaps_is_a_clear_error(tiny_config, tmp_path):
    teacher = tmp_path / "teacher"
    train(load_config(tiny_config, ["optim.epochs=1", "data.sigma=2"]), teacher, log=lambda *_: None)
    with pytest.raises(DunetError, match="teacher .*heatmap sigma is 2.0 but this model's is 0.25"):
        train(load_config(tiny_config, [f"teacher={teacher}"]), tmp_path / "run", log=lambda *_: None)
    with pytest.raises(DunetError, match="teacher: distillation blends regression"):
        load_config(tiny_config, [f"teacher={teacher}", "supervision=[detection]"])


def test_landmark_mismatch_is_a_clear_error(tiny_config, tmp_path):
    with pytest.raises(DunetError, match="model.landmarks.*68"):
        train(load_config(tiny_config, ["model.landmarks=16"]), tmp_path / "run", log=lambda *_: None)


@pytest.mark.parametrize("overrides", [
    ["model.memory_efficient=true", "precision=bf16"],
    ["model.refine=true", "supervision=[detection,regression]"],
    ["model.arch=hourglass", "model.channels=16"],
])
def test_variants_train(tiny_config, tmp_path, overrides):
    metrics = train(load_config(tiny_config, ["optim.epochs=1", *overrides]), tmp_path / "run", log=lambda *_: None)
    assert metrics["n"] == 8


# --- faults: interrupted, killed and damaged runs resume exactly --------------------------------------

FAST = ["model.levels=2", "model.input_size=32", "data.train=synthetic:16:0", "data.val=synthetic:4:1"]


def fast_config(**changes):
    """The tiny recipe at 32 px on 16 samples: 2 steps and a validation per epoch, well under a second."""
    from dunet.config import apply_overrides
    from dunet.engine.config import config_from_dict
    from tests.engine.conftest import TINY

    return config_from_dict(apply_overrides(TINY, FAST + [f"{k}={v}" for k, v in changes.items()]))


def same_run(a, b):
    """Bit-identical weights in last/ and best/, and the same log rows (timings aside)."""
    import csv

    for name in ("last", "best"):
        x, y = load_checkpoint(a / name).state_dict, load_checkpoint(b / name).state_dict
        assert x.keys() == y.keys() and all(torch.equal(x[k], y[k]) for k in x), name

    def rows(run):
        with open(run / "log.csv") as f:
            return [(r["epoch"], r["lr"], r["train_loss"], r["metric"], r["value"]) for r in csv.DictReader(f)]
    assert rows(a) == rows(b)


@pytest.fixture(scope="module")
def straight_run(tmp_path_factory):
    run = tmp_path_factory.mktemp("straight") / "run"
    train(fast_config(), run, log=lambda *_: None)
    return run


def _signal_at(monkeypatch, name, call, signum):
    """Make the `call`-th call of trainer_module.`name` send `signum` to this process first."""
    import os

    real = getattr(trainer_module, name)
    calls = {"n": 0}

    def wrapped(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == call:
            os.kill(os.getpid(), signum)
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, name, wrapped)


@pytest.mark.parametrize("where", ["mid-epoch", "validation"])
@pytest.mark.parametrize("signum", ["SIGTERM", "SIGINT"])
def test_an_interrupted_run_resumes_exactly(straight_run, tmp_path, monkeypatch, signum, where):
    import signal

    # Python installs this handler only when SIGINT was not ignored at start (a job started with `&` in a
    # script inherits SIG_IGN): set it, as an interactive user's process has it.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    run, lines = tmp_path / "run", []
    # Epoch 2's first step, or its validation: `last` must stay epoch 1, never mid-epoch weights.
    _signal_at(monkeypatch, *(("total_loss", 3) if where == "mid-epoch" else ("predict_source", 2)),
               getattr(signal, signum))
    try:
        with pytest.raises(KeyboardInterrupt):
            train(fast_config(), run, log=lines.append)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert load_checkpoint(run / "last").train_state["epoch"] == 1
    assert f"{run / 'last'} holds epoch 1, the last completed one; --resume continues with epoch 2" in lines[-1]
    monkeypatch.undo()
    train(resumed_config(run, []), run, resume=True, log=lambda *_: None)
    same_run(straight_run, run)


def test_an_interrupt_while_an_epoch_is_saved_waits_for_the_save(tmp_path, monkeypatch):
    import signal

    run, lines = tmp_path / "run", []
    _signal_at(monkeypatch, "write_log", 1, signal.SIGTERM)  # between best/ and last/ of epoch 1
    with pytest.raises(KeyboardInterrupt):
        train(fast_config(), run, log=lines.append)
    assert load_checkpoint(run / "last").train_state["epoch"] == 1  # epoch 1 was saved whole
    assert (run / "log.csv").read_text().count("\n") == 2
    # It said "no epoch completed, nothing saved" although epoch 1 was saved.
    assert f"{run / 'last'} holds epoch 1, the last completed one; --resume continues with epoch 2" in lines[-1]


def test_an_interrupt_that_python_drops_still_stops_the_run(tmp_path, monkeypatch):
    """A SIGTERM whose KeyboardInterrupt lands where Python cannot raise it (the data loader's fork hooks,
    a finaliser: "Exception ignored in ...") still stops the run at the next batch."""
    import signal

    real, calls = trainer_module.total_loss, {"n": 0}

    def loss_with_a_dropped_interrupt(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:  # epoch 2's first step
            try:  # the handler runs, as for a SIGTERM arriving now...
                signal.getsignal(signal.SIGTERM)(signal.SIGTERM, None)
            except KeyboardInterrupt:  # ...and its exception is dropped, as Python drops it in a fork hook
                pass
        return real(*args, **kwargs)

    monkeypatch.setattr(trainer_module, "total_loss", loss_with_a_dropped_interrupt)
    run, lines = tmp_path / "run", []
    with pytest.raises(KeyboardInterrupt):
        train(fast_config(**{"optim.epochs": 4}), run, log=lines.append)
    assert load_checkpoint(run / "last").train_state["epoch"] == 1
    assert calls["n"] == 3  # no step after the signal's


def test_an_interrupt_in_the_first_epoch_saves_nothing(tmp_path, monkeypatch):
    import signal

    run, lines = tmp_path / "run", []
    _signal_at(monkeypatch, "total_loss", 1, signal.SIGTERM)
    with pytest.raises(KeyboardInterrupt):
        train(fast_config(), run, log=lines.append)
    assert not (run / "last").exists() and "nothing saved" in lines[-1]


def test_log_rows_past_the_last_checkpoint_are_dropped_on_resume(straight_run, tmp_path):
    run = tmp_path / "run"
    train(fast_config(**{"optim.epochs": 1}), run, log=lambda *_: None)
    with open(run / "log.csv", "a") as f:  # as a process killed between writing the row and last/ leaves it
        f.write((run / "log.csv").read_text().splitlines()[1].replace("1,", "2,", 1) + "\r\n")
    # Whether epoch 2 improves on epoch 1 (and rewrites best/) depends on the CPU's rounding; either way
    # best/ must end as the straight run's.
    train(resumed_config(run, ["optim.epochs=2"]), run, resume=True, log=lambda *_: None)
    assert (run / "log.csv").read_text().count("\n") == 3
    same_run(straight_run, run)


def test_eval_every_is_checked_and_an_off_epoch_still_saves(tmp_path):
    with pytest.raises(DunetError, match="eval_every 0: must be >= 1"):
        fast_config(eval_every=0)
    run = tmp_path / "run"
    train(fast_config(eval_every=3, **{"optim.epochs": 2}), run, log=lambda *_: None)
    values = [line.split(",")[-1] for line in (run / "log.csv").read_text().splitlines()[1:]]
    assert values[0] == "" and values[1] != ""  # not validated, then the last epoch always is
    assert load_checkpoint(run / "last").train_state["epoch"] == 2


@pytest.mark.parametrize("text, problem", [
    ("", "empty or not a mapping"), ("model: [unclosed", "is damaged"), ("- a list\n", "not a mapping"),
    ("optim: {epochs: abc}\n", "optim.epochs"),
])
def test_resume_with_a_damaged_config_yaml_names_it(tmp_path, text, problem):
    (tmp_path / "config.yaml").write_text(text)
    with pytest.raises(DunetError, match=problem) as caught:
        resumed_config(tmp_path, [])
    assert "config.yaml" in str(caught.value)


def test_validation_never_scores_a_stand_in_for_a_bad_image(tmp_path, monkeypatch):
    """A bad validation image stops training naming it; with data.skip_bad it is left out, not replaced."""
    from dunet.data import synthetic

    real = synthetic.render_sample

    def render(sample):
        if sample.image_path == "synthetic:1:2":
            raise DunetError("synthetic:1:2: truncated image file")
        return real(sample)

    monkeypatch.setattr(synthetic, "render_sample", render)
    with pytest.raises(DunetError, match="synthetic:1:2: truncated image file"):
        train(fast_config(**{"optim.epochs": 1}), tmp_path / "a", log=lambda *_: None)
    metrics = train(fast_config(**{"optim.epochs": 1, "data.skip_bad": "true"}), tmp_path / "b",
                    log=lambda *_: None)
    assert metrics["n"] == 3


def test_threads_0_follows_work_that_starts_or_ends_during_the_run(tiny_config, tmp_path, monkeypatch):
    """Other work takes a core after the run started, then ends: the run gives that core's thread up, then takes
    it back; explicit threads are never changed."""
    from dunet.engine import hardware
    from dunet.runtime import cpu

    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(trainer_module, "usable_cores", lambda: 2)
    busy = iter([0] + [1] * 3 + [0] * 100)  # quiet at the start, then busy for 3 counts, then quiet again
    monkeypatch.setattr(cpu, "busy_cores", lambda seconds=0.1: next(busy))
    before = torch.get_num_threads()
    lines = []
    try:
        trainer = trainer_module.Trainer(load_config(tiny_config, ["threads=0"]), tmp_path / "run", log=lines.append)
        assert trainer.plan.threads == 2
        assert trainer.core_watch is not None
        trainer.core_watch = hardware.FreeCoreWatch(2, every=0)  # count after every step
        counts = []
        monkeypatch.setattr(torch, "set_num_threads", counts.append)
        trainer.fit()
        assert counts == [1, 2]
        assert any(line.startswith("1 thread(s) from step 2: other work keeps 1 of the 2 usable core(s) busy")
                   for line in lines)
        assert any(line.startswith("2 thread(s) from step 5") for line in lines)
    finally:
        monkeypatch.undo()
        torch.set_num_threads(before)
    assert trainer_module.Trainer(load_config(tiny_config), tmp_path / "asked", log=print).core_watch is None


def test_free_core_watch_counts_only_when_due(monkeypatch):
    from dunet.engine import hardware
    from dunet.runtime import cpu

    clock = iter([0.0, 10.0, 61.0, 61.0, 130.0, 130.0])  # each count reads the clock again after it
    monkeypatch.setattr(hardware.time, "monotonic", lambda: next(clock))
    free = iter([1, 1])
    monkeypatch.setattr(cpu, "free_cores", lambda: next(free))
    watch = hardware.FreeCoreWatch(2, every=60.0)  # due at 60
    assert watch.poll() is None  # at 10 s: not due, not counted
    assert watch.poll() == 1  # at 61 s: one core taken by other work
    assert watch.poll() is None  # at 130 s: counted again, unchanged


def test_the_figure_training_returns_is_the_one_eval_reproduces(tiny_config, tmp_path, capsys):
    """One model, one figure: training reports the checkpoint a run resolves to (best/), scored as
    `dunet eval RUN` scores it (no flip), not the last epoch's figure."""
    import json

    from dunet.cli import main

    cfg = load_config(tiny_config, ["optim.epochs=3"])
    metrics = train(cfg, tmp_path / "run", log=lambda *a: None)
    best = json.loads((tmp_path / "run" / "best" / "card.json").read_text())["provenance"]["metrics"]
    assert metrics == best
    assert main(["eval", str(tmp_path / "run"), "--data", cfg.data.val, "--backend", "torch", "--json",
                 "--threads", "1"]) == 0
    shown = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    key = next(k for k in ("nme_io", "pck_0.2", "mean_error_px") if k in metrics)
    assert shown[key] == pytest.approx(metrics[key], abs=0.05)
