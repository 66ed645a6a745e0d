"""tools/pack_data.py and tools/gpu_train.py, rehearsed on the CPU at toy size (docs/gpu_window.md): the pack holds
the project's split and the evaluator's images, the batched augmentation moves images and keypoints as the CPU
pipeline does, the script trains, writes a run that `dunet eval` scores to the same figure, and refuses a missing,
damaged or other-split pack in one line."""

from __future__ import annotations

import csv
import importlib.util
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from dunet.data.transforms import apply_affine, crop_matrix, warp_image
from dunet.engine.config import load_config
from dunet.engine.trainer import Distributed, build_data, split_indices

REPO = Path(__file__).resolve().parents[2]
TOOLS = REPO / "tools"
FACES = 16  # 12 to train on, 4 held out


def load_tool(name: str):
    spec = importlib.util.spec_from_file_location(name, TOOLS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


gpu_train = load_tool("gpu_train")  # puts tools/ on sys.path, where it finds pack_data
import pack_data  # noqa: E402


@pytest.fixture(scope="module")
def recipe(tmp_path_factory) -> Path:
    """A toy recipe on a handful of real 300-W faces (copied to a temporary folder), or generated ones without them."""
    tmp = tmp_path_factory.mktemp("gpu_train")
    real = REPO.parent / "shared" / "data" / "300w"
    if real.is_dir():
        (tmp / "faces").mkdir()
        for image in sorted(real.glob("*.jpg"))[::75][:FACES]:  # AFW and HELEN faces both
            for path in (image, image.with_suffix(".pts")):
                shutil.copy(path, tmp / "faces")
        train = f"300w:{tmp / 'faces'}"
    else:
        train = f"synthetic:{FACES}:0"
    path = tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump({
        "model": {"arch": "dunet", "units": 1, "order": 1, "landmarks": 68, "input_size": 64, "channels": 16,
                  "bottleneck": 16, "growth": 8},
        "data": {"train": train, "val_fraction": 0.25, "split_seed": 0, "sigma": 1.0, "occlusion": 0.5},
        "optim": {"batch_size": 4, "epochs": 3, "lr": 1e-3, "ema": 0.9},
        "regression_loss": "awing", "precision": "fp32", "device": "cpu", "threads": 1}))
    return path


@pytest.fixture(scope="module")
def pack(recipe) -> Path:
    path = recipe.parent / "packs" / "tiny.npz"
    assert pack_data.main([str(recipe), "--out", str(path)]) == 0
    return path


def test_the_pack_holds_the_projects_split_and_the_evaluators_images(recipe, pack):
    cfg = load_config(recipe)
    packed = pack_data.open_pack(pack, cfg)
    source, _, train_set, groups, val_idx = build_data(cfg, Distributed())
    assert packed.meta["held_out"] == split_indices(FACES, 0.25, 0)[1] == val_idx
    assert packed.meta["train_ids"] == groups[0] and len(groups[0]) == 12
    held_out = packed.held_out()
    for i, index in enumerate(val_idx):  # the original pixels, box and points: what `dunet eval` crops
        assert np.array_equal(held_out.load_image(i), source.load_image(index))
        assert np.array_equal(held_out.samples[i].keypoints, source.samples[index].keypoints)
        assert held_out.samples[i].scale == pytest.approx(source.samples[index].scale)
    crops, keypoints, _ = packed.train_crops()
    assert crops.shape == (12, 80, 80, 3) and crops.dtype == np.uint8  # 1.25 x the 64 px input
    first = source.samples[groups[0][0]]
    matrix = crop_matrix(first.center, train_set.crop_side(groups[0][0]) * pack_data.CONTEXT, 80)
    np.testing.assert_allclose(keypoints[0], apply_affine(first.keypoints, matrix), atol=1e-3)


@pytest.mark.parametrize("scale, rotation, flip", [(1.2, 25.0, True), (0.8, -10.0, False)])
def test_batched_augmentation_matches_the_cpu_pipeline(recipe, pack, scale, rotation, flip):
    cfg = load_config(recipe)
    crops, keypoints, visible = pack_data.open_pack(pack, cfg).train_crops()
    source, _, train_set, groups, _ = build_data(cfg, Distributed())
    n, size, spec = 3, 64, source.spec
    params = {"scale": torch.full((n,), scale), "rotation": torch.full((n,), rotation),
              "flip": torch.full((n,), flip), "gain": torch.ones(n, 3), "occluded": torch.zeros(n, dtype=torch.bool),
              "occluder_size": torch.zeros(n, 2), "occluder_at": torch.zeros(n, 2), "occluder_color": torch.zeros(n, 3)}
    images, points, _ = gpu_train.augment(torch.from_numpy(crops[:n]).permute(0, 3, 1, 2),
                                          torch.from_numpy(keypoints[:n]), torch.from_numpy(visible[:n]), params,
                                          size, pack_data.CONTEXT, torch.as_tensor(spec.flip_index()))
    for j, index in enumerate(groups[0][:n]):
        sample = source.samples[index]
        matrix = crop_matrix(sample.center, train_set.crop_side(index) * scale, size, rotation, flip)
        expected = apply_affine(sample.keypoints, matrix)[spec.flip_index() if flip else slice(None)]
        np.testing.assert_allclose(points[j].numpy(), expected, atol=1e-3)
        # The image went the same way (resampled twice here, so a little softer).
        cpu = warp_image(source.load_image(index), matrix, size).astype(np.float32) / 255
        ours = images[j].permute(1, 2, 0).numpy()
        assert np.abs(ours - cpu).mean() < 0.04 and np.corrcoef(ours.ravel(), cpu.ravel())[0, 1] > 0.95


def test_occluders_and_colour_gains_are_painted_where_drawn():
    crops = torch.full((2, 3, 20, 20), 255, dtype=torch.uint8)
    params = {"scale": torch.ones(2), "rotation": torch.zeros(2), "flip": torch.zeros(2, dtype=torch.bool),
              "gain": torch.tensor([[0.5, 1.0, 1.0], [1.0, 1.0, 1.0]]), "occluded": torch.tensor([True, False]),
              "occluder_size": torch.full((2, 2), 0.25), "occluder_at": torch.tensor([[0.5, 0.0], [0.5, 0.0]]),
              "occluder_color": torch.tensor([[0.2, 0.3, 0.4], [0.2, 0.3, 0.4]])}
    images, _, _ = gpu_train.augment(crops, torch.zeros(2, 1, 2), torch.ones(2, 1), params, 20, 1.0, torch.tensor([0]))
    # Sample 0: x in [10, 15), y in [0, 5) painted; elsewhere white with red halved. Sample 1: untouched.
    assert torch.allclose(images[0, :, 2, 12], torch.tensor([0.2, 0.3, 0.4]))
    assert torch.allclose(images[0, :, 10, 12], torch.tensor([0.5, 1.0, 1.0]))
    assert torch.allclose(images[1], torch.ones(3, 20, 20))


def test_the_plan_fits_the_budget():
    # 100 s, less 2 s for the final evaluation and the save; an epoch is 10 steps of 0.5 s plus an evaluation.
    spare = 100 - 2 - gpu_train.SAVE_SECONDS
    assert gpu_train.fit_epochs(100, 10, 0.5, 2.0, 1, 1000) == int(spare // 7)
    assert gpu_train.fit_epochs(100, 10, 0.5, 2.0, 2, 1000) == int(spare // 6)
    assert gpu_train.fit_epochs(100, 10, 0.5, 2.0, 1, 5) == 5  # at most the recipe's epochs
    assert gpu_train.fit_epochs(8, 10, 0.5, 2.0, 1, 1000) == 0


@pytest.mark.slow  # a fresh process: about 5 s of it is importing torch and matplotlib
def test_the_rehearsal_trains_and_dunet_eval_scores_its_run_the_same(recipe, pack, tmp_path):
    """The script as the GPU machine runs it (a fresh process, the script's own imports), at toy size."""
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, str(TOOLS / "gpu_train.py"), str(recipe), "--pack", str(pack), "--out",
                           str(out), "--epochs", "2", "--minutes", "2"], capture_output=True, text=True, cwd=REPO,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    plan = next(i for i, line in enumerate(lines) if line.startswith("plan: 2 epochs x 3 steps = 6 steps"))
    assert "assumed on an H100" in proc.stdout and plan < next(i for i, line in enumerate(lines) if "epoch 1/2" in line)
    result = yaml.safe_load((out / "result.json").read_text())
    assert result["epochs"] == 2 and result["steps"] == 6 and result["held_out"] == 4
    for name in ("config.yaml", "log.csv", "curves.png", "last/model.safetensors", "last/card.json"):
        assert (out / name).is_file(), name
    from safetensors import safe_open

    with safe_open(out / "last" / "model.safetensors", "pt") as f:  # float16: DU-Net(8) then fits 16 MiB
        assert {f.get_tensor(k).dtype for k in f.keys() if "num_batches" not in k} == {torch.float16}
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 and float(rows[-1]["value"]) == pytest.approx(result["nme_io"])  # the saved weights' figure

    from dunet.data.readers import open_source
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model

    model = load_torch_model(out, precision="fp32")  # what `dunet eval RUN --split val --backend torch` does
    assert model.config.optim.epochs == 2 and next(model.model.parameters()).dtype == torch.float32
    cfg = model.config
    source = open_source(cfg.data.train[0])
    _, val_idx = split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)
    metrics = score(source, *predict_source(model.predict_crops, source, cfg.model.input_size, indices=val_idx))
    assert metrics["nme_io"] == pytest.approx(result["nme_io"], rel=1e-6)


def refusal(capsys, args: list[str]) -> str:
    assert gpu_train.main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_a_missing_pack_is_refused_in_one_line(recipe, tmp_path, capsys):
    missing = tmp_path / "nowhere.npz"
    err = refusal(capsys, [str(recipe), "--pack", str(missing), "--out", str(tmp_path / "run")])
    assert str(missing) in err and "tools/pack_data.py" in err
    assert not (tmp_path / "run").exists()


def test_a_damaged_pack_is_refused_in_one_line(recipe, pack, tmp_path, capsys):
    damaged = tmp_path / "damaged.npz"
    damaged.write_bytes(pack.read_bytes()[: pack.stat().st_size // 2])
    err = refusal(capsys, [str(recipe), "--pack", str(damaged), "--out", str(tmp_path / "run")])
    assert str(damaged) in err and "damaged data pack" in err


def test_a_pack_of_another_split_is_refused_in_one_line(recipe, tmp_path, capsys):
    other = tmp_path / "seed1.npz"
    assert pack_data.main([str(recipe), "--out", str(other), "--set", "data.split_seed=1"]) == 0
    capsys.readouterr()
    err = refusal(capsys, [str(recipe), "--pack", str(other), "--check"])
    assert str(other) in err and "another split" in err and "split_seed" in err
    # ... and the same pack passes the check under the recipe it was made from.
    assert gpu_train.main([str(recipe), "--pack", str(other), "--check", "--set", "data.split_seed=1"]) == 0
    assert "assumed on an H100" in capsys.readouterr().out


def test_a_pack_whose_held_out_ids_were_changed_is_refused(recipe, pack, tmp_path, capsys):
    import json

    with np.load(pack) as npz:
        arrays = dict(npz)
    meta = json.loads(str(arrays["meta"]))
    meta["held_out"][0], meta["train_ids"][0] = meta["train_ids"][0], meta["held_out"][0]
    arrays["meta"] = np.array(json.dumps(meta))
    moved = tmp_path / "moved.npz"
    pack_data.write_pack(moved, arrays)
    err = refusal(capsys, [str(recipe), "--pack", str(moved), "--check"])
    assert str(moved) in err and "not the split" in err
