import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors import safe_open
from safetensors.torch import save_file

import dunet.checkpoint as checkpoint
from dunet import files
from dunet import DunetError
from dunet.checkpoint import (
    capture_rng, init_weights, load_checkpoint, load_weights, restore_optimizer, restore_rng, save_checkpoint,
)
from dunet.data.spec import spec_from_names
from dunet.engine.config import TrainConfig
from dunet.models import ModelConfig, build_model

SMALL = ModelConfig(units=1, input_size=32, levels=2, landmarks=5, channels=16, bottleneck=16, growth=8)
CONFIG = TrainConfig(model=SMALL)
CARD = CONFIG.model_card(spec_from_names("dots", [f"dot{i}" for i in range(5)]))
OPTIMIZERS = {
    "rmsprop": lambda params: torch.optim.RMSprop(params, lr=2.5e-4),
    "adam": lambda params: torch.optim.Adam(params, lr=1e-3, betas=(0.9, 0.99)),
}


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run faster on one thread, and two threads per process thrash on a shared 2-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def small_model(**changes) -> torch.nn.Module:
    return build_model(SMALL.replace(**changes))


def train_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One step whose inputs come from the torch RNG, so the RNG state matters too."""
    images = torch.rand(2, 3, SMALL.input_size, SMALL.input_size)
    target = torch.rand(2, SMALL.landmarks, SMALL.heatmap_size, SMALL.heatmap_size)
    loss = sum(F.mse_loss(h, target) for h in model(images))
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def weights(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


# --- round trip --------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", sorted(OPTIMIZERS))
def test_round_trip_gives_an_identical_next_step(tmp_path: Path, kind: str):
    model = small_model()
    optimizer = OPTIMIZERS[kind](model.parameters())
    for _ in range(2):
        train_step(model, optimizer)
    save_checkpoint(tmp_path / "run" / "last", model, CARD, config=CONFIG, optimizer=optimizer,
                    train_state={"epoch": 3, "step": 2, "best_metric": float("inf")}, metrics={"nme_io": 5.1})
    train_step(model, optimizer)
    expected = weights(model)
    expected_draws = (random.random(), float(np.random.rand()))

    # A different model, optimizer and RNG state, then everything restored from the run directory.
    torch.manual_seed(123)
    random.seed(123)
    np.random.seed(123)
    resumed = small_model()
    resumed_optimizer = OPTIMIZERS[kind](resumed.parameters())
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.path == tmp_path / "run" / "last"
    load_weights(resumed, ckpt)
    restore_optimizer(resumed_optimizer, ckpt)
    restore_rng(ckpt.train_state["rng"])
    train_step(resumed, resumed_optimizer)

    assert_same(weights(resumed), expected)
    assert (random.random(), float(np.random.rand())) == expected_draws
    assert ckpt.train_state["epoch"] == 3 and ckpt.train_state["best_metric"] == float("inf")
    assert ckpt.config == CONFIG and ckpt.card.provenance["metrics"] == {"nme_io": 5.1}
    assert ckpt.optimizer_type == type(optimizer).__name__


def test_optimizer_state_is_flattened_into_named_tensors(tmp_path: Path):
    model = small_model()
    optimizer = OPTIMIZERS["adam"](model.parameters())
    train_step(model, optimizer)
    path = save_checkpoint(tmp_path / "last", model, CARD, optimizer=optimizer)
    with safe_open(str(path / "train_state.safetensors"), framework="pt") as f:
        names = set(f.keys())
    assert {"optimizer.state.0.exp_avg", "optimizer.state.0.exp_avg_sq", "optimizer.state.0.step"} <= names
    assert "train.rng.torch" in names
    structure = json.loads((path / "train_state.json").read_text())
    assert structure["optimizer"]["param_groups"][0]["lr"] == 1e-3
    saved = load_checkpoint(path).optimizer_state
    assert set(saved["state"]) == set(optimizer.state_dict()["state"])  # integer parameter indices
    assert saved["param_groups"][0]["betas"] == (0.9, 0.99)


def test_rng_state_survives_a_json_round_trip():
    state = capture_rng()
    as_json = json.loads(json.dumps({**state, "torch": state["torch"].tolist()}))
    expected = (random.random(), float(np.random.rand()), torch.rand(3))
    restore_rng(as_json)
    assert random.random() == expected[0] and float(np.random.rand()) == expected[1]
    assert torch.equal(torch.rand(3), expected[2])


def test_single_file_model(tmp_path: Path):
    model = small_model().eval()
    path = save_checkpoint(tmp_path / "models" / "face.safetensors", model, CARD, config=CONFIG, metrics={"nme_io": 3.3})
    assert sorted(p.name for p in path.parent.iterdir()) == ["face.safetensors"]
    ckpt = load_checkpoint(path)
    assert ckpt.config == CONFIG and ckpt.card.provenance["metrics"] == {"nme_io": 3.3}
    assert ckpt.train_state is None and ckpt.optimizer_state is None
    fresh = small_model().eval()
    load_weights(fresh, path)
    images = torch.rand(1, 3, SMALL.input_size, SMALL.input_size)
    assert torch.equal(fresh(images)[-1], model(images)[-1])


def test_weights_with_nan_or_inf_are_refused_at_load_naming_the_tensors(tmp_path: Path):
    """A model of NaN weights put every point at one place with score NaN, and eval printed a number."""
    model = small_model()
    names = [name for name, t in model.state_dict().items() if t.is_floating_point()]
    with torch.no_grad():
        model.state_dict()[names[0]].fill_(float("nan"))
        model.state_dict()[names[5]][0] = float("inf")
    for path in (tmp_path / "m.safetensors", tmp_path / "ckpt"):
        save_checkpoint(path, model, CARD)
        with pytest.raises(DunetError) as caught:
            load_checkpoint(path)
        message = str(caught.value)
        assert "damaged weights: tensor(s) " in message and "hold NaN or infinite values" in message
        assert names[0] in message and names[5] in message and str(path) in message and "\n" not in message


def test_init_weights_copies_what_fits_and_keeps_the_rest(tmp_path: Path):
    torch.manual_seed(0)
    source = small_model()
    path = save_checkpoint(tmp_path / "face.safetensors", source, CARD)
    torch.manual_seed(1)
    target = small_model(landmarks=9)  # fine-tuning onto another landmark count: the heads differ
    before = weights(target)
    copied, kept = init_weights(target, path)
    after, given = weights(target), weights(source)
    assert kept and all(name.startswith("heads.") or name.endswith("num_batches_tracked") for name in kept)
    assert all(torch.equal(after[name], before[name]) for name in kept)
    assert all(torch.equal(after[name], given[name]) for name in copied)
    assert len(copied) + len(kept) == len(after)
    with pytest.raises(DunetError, match="no tensor fits"):
        init_weights(build_model(SMALL.replace(arch="hourglass", channels=8)), path)


def test_int8_weights_file(tmp_path: Path):
    model = small_model().eval()
    full = save_checkpoint(tmp_path / "full.safetensors", model, CARD)
    small = save_checkpoint(tmp_path / "int8.safetensors", model, CARD, int8_weights=True)
    with safe_open(str(small), framework="pt") as f:
        conv_keys = [k for k in f.keys() if f.get_slice(k).get_dtype() == "I8"]
    assert conv_keys and all(model.state_dict()[k].dim() == 4 for k in conv_keys)
    assert small.stat().st_size < 0.5 * full.stat().st_size  # BN, scales and JSON metadata stay
    loaded = load_checkpoint(small).state_dict
    assert set(loaded) == set(model.state_dict())
    for name, original in model.state_dict().items():
        if original.dim() == 4:  # within half a step of its channel's grid
            step = original.abs().flatten(1).amax(dim=1) / 127
            assert ((loaded[name] - original).abs().flatten(1).amax(dim=1) <= step / 2 + 1e-7).all()
        else:
            assert torch.equal(loaded[name], original)
    with pytest.raises(ValueError, match="single-file"):
        save_checkpoint(tmp_path / "dir", model, CARD, int8_weights=True)


def test_damaged_int8_weights_are_reported(tmp_path: Path):
    model = small_model()
    path = save_checkpoint(tmp_path / "int8.safetensors", model, CARD, int8_weights=True)
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    name = next(k for k in tensors if k.endswith(".int8_scale"))
    tensors[name] = tensors[name][:-1]
    save_file(tensors, str(path), metadata=metadata)
    with pytest.raises(DunetError, match="damaged int8 weight"):
        load_checkpoint(path)


def test_model_file_of_a_checkpoint_dir_is_a_model_on_its_own(tmp_path: Path):
    model = small_model()
    save_checkpoint(tmp_path / "best", model, CARD, train_state={"epoch": 1})
    ckpt = load_checkpoint(tmp_path / "best" / "model.safetensors")
    assert ckpt.card.spec == CARD.spec
    assert_same(ckpt.state_dict, model.state_dict())


def test_single_file_cannot_hold_training_state(tmp_path: Path):
    model = small_model()
    with pytest.raises(ValueError, match="single-file"):
        save_checkpoint(tmp_path / "m.safetensors", model, CARD, train_state={"epoch": 1})


def test_run_dir_prefers_best(tmp_path: Path):
    save_checkpoint(tmp_path / "last", small_model(), CARD, metrics={"which": "last"})
    save_checkpoint(tmp_path / "best", small_model(), CARD, metrics={"which": "best"})
    assert load_checkpoint(tmp_path).card.provenance["metrics"]["which"] == "best"


# --- atomic writes -----------------------------------------------------------------------------

def saved_twice(tmp_path: Path) -> tuple[Path, dict, torch.nn.Module]:
    """A run with last/ holding model A, and a different model B to save over it."""
    target = tmp_path / "run" / "last"
    first = small_model()
    save_checkpoint(target, first, CARD, train_state={"epoch": 1})
    return target, weights(first), small_model()


def test_failed_write_keeps_the_old_checkpoint(tmp_path: Path, monkeypatch):
    target, first, second = saved_twice(tmp_path)
    real_write = files.write_synced
    calls = []

    def disk_full_on_second_file(path: Path, data: bytes) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real_write(path, data)

    monkeypatch.setattr(files, "write_synced", disk_full_on_second_file)
    with pytest.raises(DunetError, match="No space left"):
        save_checkpoint(target, second, CARD, train_state={"epoch": 2})
    ckpt = load_checkpoint(target)
    assert ckpt.train_state["epoch"] == 1
    assert_same(ckpt.state_dict, first)
    assert sorted(p.name for p in target.parent.iterdir()) == ["last"]


def test_crash_while_writing_leaves_last_loadable_and_is_cleaned_up(tmp_path: Path, monkeypatch):
    target, first, second = saved_twice(tmp_path)
    real_write = files.write_synced

    def killed_mid_file(path: Path, data: bytes) -> None:
        real_write(path, data[: len(data) // 2])
        raise KeyboardInterrupt  # stands for the process dying: no cleanup code runs

    monkeypatch.setattr(files, "write_synced", killed_mid_file)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, second, CARD, train_state={"epoch": 2})
    monkeypatch.undo()
    assert (target.parent / ".last.tmp").is_dir()
    assert_same(load_checkpoint(target).state_dict, first)

    save_checkpoint(target, second, CARD, train_state={"epoch": 2})
    assert sorted(p.name for p in target.parent.iterdir()) == ["last"]
    assert load_checkpoint(target).train_state["epoch"] == 2


def test_crash_between_the_renames_falls_back_to_the_old_copy(tmp_path: Path, monkeypatch):
    target, first, second = saved_twice(tmp_path)
    real_replace = os.replace

    def killed_before_new_is_in_place(src, dst):
        if Path(src).name == ".last.tmp":
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", killed_before_new_is_in_place)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(target, second, CARD, train_state={"epoch": 2})
    monkeypatch.undo()
    assert not target.exists()
    assert_same(load_checkpoint(target).state_dict, first)
    assert_same(load_checkpoint(target.parent).state_dict, first)

    save_checkpoint(target, second, CARD, train_state={"epoch": 2})
    assert sorted(p.name for p in target.parent.iterdir()) == ["last"]
    assert_same(load_checkpoint(target).state_dict, weights(second))


def test_two_processes_writing_one_file_at_once_each_write_it_whole(tmp_path: Path, monkeypatch):
    """Two `dunet predict` into one --out shared one temporary file: one renamed the other's half-written file into
    place and the other failed. Here a second process writes the file while the first is writing it."""
    target = tmp_path / "predictions.json"
    real_write, real_pid = files.write_synced, os.getpid

    def write(path, data):
        real_write(path, data)
        if data == b"A" * 20:  # the first process has written its temporary file and is about to rename it
            monkeypatch.setattr(os, "getpid", lambda: real_pid() + 1)
            files.atomic_write_file(target, b"B" * 10)
            monkeypatch.setattr(os, "getpid", real_pid)

    monkeypatch.setattr(files, "write_synced", write)
    files.atomic_write_file(target, b"A" * 20)
    assert target.read_bytes() == b"A" * 20 and list(tmp_path.iterdir()) == [target]


def test_refuses_to_replace_a_directory_that_is_not_a_checkpoint(tmp_path: Path):
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DunetError, match="not a dunet checkpoint"):
        save_checkpoint(tmp_path, small_model(), CARD)
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# --- errors ------------------------------------------------------------------------------------

def test_missing_path(tmp_path: Path):
    with pytest.raises(DunetError, match="no such checkpoint"):
        load_checkpoint(tmp_path / "nope")


def test_directory_that_is_not_a_checkpoint(tmp_path: Path):
    (tmp_path / "readme.txt").write_text("hello")
    with pytest.raises(DunetError, match="not a dunet checkpoint"):
        load_checkpoint(tmp_path)


def test_garbage_file(tmp_path: Path):
    path = tmp_path / "model.safetensors"
    path.write_bytes(b"this is not a safetensors file at all" * 10)
    with pytest.raises(DunetError, match=r"model\.safetensors: corrupt or truncated"):
        load_checkpoint(path)


def test_truncated_file(tmp_path: Path):
    path = save_checkpoint(tmp_path / "m.safetensors", small_model(), CARD)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    with pytest.raises(DunetError, match="corrupt or truncated"):
        load_checkpoint(path)


def test_truncated_training_state_in_a_directory(tmp_path: Path):
    model = small_model()
    path = save_checkpoint(tmp_path / "last", model, CARD, optimizer=OPTIMIZERS["adam"](model.parameters()))
    state_file = path / "train_state.safetensors"
    state_file.write_bytes(state_file.read_bytes()[:50])
    with pytest.raises(DunetError, match="train_state.safetensors: corrupt or truncated"):
        load_checkpoint(path)


def test_plain_safetensors_is_not_a_dunet_model(tmp_path: Path):
    path = tmp_path / "weights.safetensors"
    save_file(small_model().state_dict(), str(path))
    with pytest.raises(DunetError, match="not a dunet model"):
        load_checkpoint(path)


def test_newer_format_is_refused(tmp_path: Path):
    path = save_checkpoint(tmp_path / "last", small_model(), CARD)
    model_file = path / "model.safetensors"
    with safe_open(str(model_file), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    save_file(tensors, str(model_file), metadata={**metadata, "format_version": "99"})
    with pytest.raises(DunetError, match="newer dunet"):
        load_checkpoint(path)


def test_wrong_landmark_count_names_the_tensor_and_shapes(tmp_path: Path):
    path = save_checkpoint(tmp_path / "m.safetensors", small_model(landmarks=7), CARD)
    with pytest.raises(DunetError) as err:
        load_weights(small_model(), path)
    message = str(err.value)
    assert "'heads.0.conv.weight'" in message
    assert "(7, 16, 1, 1) in the checkpoint" in message and "(5, 16, 1, 1) in the model" in message


def test_wrong_architecture(tmp_path: Path):
    path = save_checkpoint(tmp_path / "m.safetensors", small_model(), CARD)
    hourglass = build_model(ModelConfig(arch="hourglass", units=1, input_size=32, levels=2, landmarks=5, channels=16))
    with pytest.raises(DunetError, match="does not fit this model.*arch=dunet"):
        load_weights(hourglass, path)


def test_optimizer_errors(tmp_path: Path):
    model = small_model()
    exported = load_checkpoint(save_checkpoint(tmp_path / "m.safetensors", model, CARD))
    with pytest.raises(DunetError, match="no optimizer state"):
        restore_optimizer(OPTIMIZERS["adam"](model.parameters()), exported)
    adam = OPTIMIZERS["adam"](model.parameters())
    train_step(model, adam)
    ckpt = load_checkpoint(save_checkpoint(tmp_path / "last", model, CARD, optimizer=adam))
    with pytest.raises(DunetError, match="from Adam, not RMSprop"):
        restore_optimizer(OPTIMIZERS["rmsprop"](model.parameters()), ckpt)
    with pytest.raises(DunetError, match="does not fit this optimizer"):
        restore_optimizer(torch.optim.Adam(list(model.parameters())[:3]), ckpt)


# --- no pickle ---------------------------------------------------------------------------------

def test_loading_never_unpickles(tmp_path: Path, monkeypatch):
    model = small_model()
    optimizer = OPTIMIZERS["rmsprop"](model.parameters())
    train_step(model, optimizer)
    save_checkpoint(tmp_path / "run" / "last", model, CARD, config=CONFIG, optimizer=optimizer, train_state={"epoch": 1})
    save_checkpoint(tmp_path / "m.safetensors", model, CARD)

    def forbidden(*args, **kwargs):
        raise AssertionError("unpickling is not allowed")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    ckpt = load_checkpoint(tmp_path / "run")
    fresh = small_model()
    load_weights(fresh, ckpt)
    restore_optimizer(OPTIMIZERS["rmsprop"](fresh.parameters()), ckpt)
    restore_rng(ckpt.train_state["rng"])
    load_weights(small_model(), tmp_path / "m.safetensors")


def test_a_model_file_asking_for_a_huge_model_is_refused_before_building_it(tmp_path: Path):
    """A damaged or hostile header's config is range-checked: a line, not an allocator failure."""
    from dunet.engine.inference import load_torch_model

    path = save_checkpoint(tmp_path / "m.safetensors", small_model(), CARD)
    with safe_open(str(path), framework="pt") as f:
        tensors, metadata = {k: f.get_tensor(k) for k in f.keys()}, f.metadata()
    huge = json.loads(metadata["dunet_card"])
    huge["network"]["units"] = 100_000
    save_file(tensors, str(path), metadata={**metadata, "dunet_card": json.dumps(huge)})
    with pytest.raises(DunetError, match="units 100000: must be <= 64"):
        load_torch_model(path)
