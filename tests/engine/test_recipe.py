"""The own-data recipe (`dunet train --data`): data checks, choices sized to a time budget, crops that match
between training, eval and predict for DeepLabCut frames."""

from __future__ import annotations

import numpy as np
import pytest

from dunet import DunetError
from dunet.cli import main
from dunet.data.readers import open_source
from dunet.data.sample import normaliser
from dunet.data.spec import with_normaliser
from dunet.engine.recipe import check_own_data, own_data_config, starting_model

pytestmark = pytest.mark.kernels  # run again under an AVX2 cap by `make test`


DLC = "dlc_openfield/labeled-data/m4s1/CollectedData_Pranav.csv"


@pytest.fixture(scope="module")
def openfield(shared_data):
    return f"dlc:{shared_data / DLC}"


def test_dlc_frames_are_cropped_whole_and_scored_by_the_animals_box(openfield):
    source = open_source(openfield)
    sample = source.samples[0]
    width, height = 640, 480  # the project's frames
    assert source.spec.box_margin == 1.0 and sample.scale == max(width, height)
    np.testing.assert_allclose(sample.center, [width / 2 - 0.5, height / 2 - 0.5])
    labelled = sample.keypoints[sample.visible > 0]
    assert normaliser(source.spec, sample) == pytest.approx(float(np.ptp(labelled, axis=0).max()))


def test_a_normaliser_can_be_chosen_by_keypoint_names(openfield):
    spec = open_source(openfield).spec
    assert with_normaliser(spec, "torso:snout,tailbase").normaliser == ("torso", (0, 3))
    assert with_normaliser(spec, "box").normaliser == ("bbox", None)
    with pytest.raises(DunetError, match="no keypoint named nose"):
        with_normaliser(spec, "interocular:nose,tailbase")
    with pytest.raises(DunetError, match="use box, interocular:NAME,NAME or torso:NAME,NAME"):
        with_normaliser(spec, "torso:snout")


def test_too_few_frames_or_a_never_labelled_keypoint_is_one_clear_line(shared_data):
    with pytest.raises(DunetError, match="4 labelled frame\\(s\\); a usable model needs at least 10"):
        check_own_data(open_source("synthetic:4:0"))
    source = open_source("synthetic:12:0")
    for sample in source.samples:
        sample.visible[5] = 0
    with pytest.raises(DunetError, match=f"keypoint\\(s\\) {source.spec.keypoints[5]} are labelled in none"):
        check_own_data(source)


def test_choices_fit_the_budget_and_start_from_the_closest_model(openfield):
    source = open_source(openfield)
    assert starting_model(source.spec)[0] == "lsp-dunet4"
    assert starting_model(open_source("synthetic:12:0").spec)[0] == "300w-dunet4"
    fast = {256: 0.5, 192: 0.3, 128: 0.1}  # seconds per step of 8 images, by input size
    cfg, lines = own_data_config(openfield, "", source, minutes=10, timer=lambda cfg, size, batch: fast[size])
    steps = -(-(len(source) - round(len(source) * 0.2)) // 8)
    assert cfg.model.input_size == 256 and cfg.optim.epochs == int(10 * 60 * 0.85 // (0.5 * steps))
    assert cfg.init == "lsp-dunet4" and cfg.model.landmarks == 4 and cfg.data.val_fraction == 0.2
    assert cfg.optim.milestone_epochs() == [round(0.7 * cfg.optim.epochs), round(0.9 * cfg.optim.epochs)]
    assert any("expected time" in line for line in lines)
    slow = {256: 30.0, 192: 2.0, 128: 1.0}  # too slow for 15 epochs at 256 px: a smaller input
    cfg, lines = own_data_config(openfield, "", source, minutes=10, timer=lambda cfg, size, batch: slow[size])
    assert cfg.model.input_size == 192
    # It says what the budget cost, and what buys the larger input: 15 epochs of 30 s x 12 steps at 256 px.
    need = -(-15 * 30.0 * steps // (0.85 * 60))
    assert "forces 192 px instead of 256 px" in lines[-1] and f"--minutes {need:.0f} would train at 256 px" in lines[-1]
    assert not any("only" in line for line in lines)  # 192 px fits the epochs
    crawl = {256: 30.0, 192: 20.0, 128: 10.0}  # not even 128 px fits 15 epochs
    cfg, lines = own_data_config(openfield, "", source, minutes=10, timer=lambda cfg, size, batch: crawl[size])
    assert cfg.model.input_size == 128 and cfg.optim.epochs == int(10 * 60 * 0.85 // (10.0 * steps))
    assert f"only {cfg.optim.epochs} epoch(s) fit in 10 min at 128 px" in lines[-1]
    assert f"--minutes {-(-15 * 10.0 * steps // (0.85 * 60)):.0f} gives 15" in lines[-1]
    assert not any("forces" in line for line in lines[:-2]) and "forces 128 px" in lines[-2]
    _, lines = own_data_config(openfield, "", source, minutes=10, timer=lambda cfg, size, batch: crawl[size],
                               overrides=["optim.epochs=3"])
    assert not any("note:" in line for line in lines)  # --set chose: the machine forced nothing
    cfg, _ = own_data_config(openfield, "", source, minutes=10, timer=lambda *a: 0.1,
                             overrides=["optim.epochs=3"])
    assert cfg.optim.epochs == 3  # --set wins
    cfg, lines = own_data_config(openfield, "", source, minutes=10, timer=lambda *a: 0.1,
                                 overrides=["init=", "optim.epochs=10", "optim.milestones=[0.5]", "optim.gammas=[0.1]"])
    assert cfg.init == "" and "start: from scratch" in lines[1]  # the log says what really runs
    assert "lr 0.0005 x0.1 from epoch 6" in lines[3]


def test_val_with_other_keypoint_names_is_refused_naming_both(openfield, shared_data, tmp_path, capsys):
    other = f"dlc:{shared_data / 'fixtures/dlc_mirror_mouse/CollectedData.csv'}"
    assert main(["train", "--data", openfield, "--val", other, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert f"--val {other} has keypoints" in err and f"--data {openfield} has ['snout'" in err


@pytest.mark.slow
def test_the_own_data_recipe_learns_a_real_deeplabcut_project(openfield, tmp_path):
    """A CI-sized run of the recipe on dlc_openfield (116 frames, 4 parts): 128 px, 6 epochs. The full-size
    benchmark is bench/own_data.py (goal: PCK@0.2 >= 90 % in <= 15 minutes)."""
    from dunet.engine.evaluate import predict_source, score
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import split_indices, train

    source = open_source(openfield)
    cfg, _ = own_data_config(openfield, "", source, minutes=1, timer=lambda *a: 0.1,
                             overrides=["model.input_size=128", "optim.epochs=6", "eval_every=6"])
    train(cfg, tmp_path / "run", log=lambda *_: None)
    model = load_torch_model(tmp_path / "run" / "last", precision="fp32")
    _, held_out = split_indices(len(source), cfg.data.val_fraction, cfg.data.split_seed)
    pred, idx = predict_source(model.predict_crops, source, model.input_size, indices=held_out)
    metrics = score(source, pred, idx, model.spec)
    assert metrics["pck_0.2"] >= 60 and metrics["mean_error_px"] < 40, metrics


def test_a_project_folder_trains_on_its_merged_labels_and_init_refines_a_run(shared_data, tmp_path, capsys):
    """`dunet train --data PROJECT --init RUN`: every labeled-data/*/CollectedData_*.csv merged, the run's
    network and input size kept, its weights (heads included) the start."""
    import yaml

    from dunet.data.readers import DlcLabels, read_dlc_labels, write_dlc_labels
    from dunet.engine.config import config_from_dict
    from dunet.engine.trainer import train
    from tests.engine.conftest import TINY

    table = read_dlc_labels(shared_data / DLC)
    names, rows = table.names, table.frames
    project = tmp_path / "project"
    (project / "labeled-data").mkdir(parents=True)
    (project / "config.yaml").write_text(yaml.safe_dump({"scorer": "me", "bodyparts": names}))
    images = sorted(rows)
    for part, chosen in (("a", images[:12]), ("b", images[12:24])):
        folder = project / "labeled-data" / part
        folder.mkdir()
        for image in chosen:  # the real frames, linked into this project's layout
            (folder / image.split("/")[-1]).symlink_to(shared_data / "dlc_openfield" / image)
        write_dlc_labels(folder / "CollectedData_me.csv",
                         DlcLabels("me", names, {f"labeled-data/{part}/{i.split('/')[-1]}": rows[i] for i in chosen}))
    first = config_from_dict({**TINY, "model": {**TINY["model"], "landmarks": 4},
                              "data": {"train": [f"dlc:{project}/labeled-data/a/CollectedData_me.csv"],
                                       "val_fraction": 0.2, "workers": 0}, "optim": {**TINY["optim"], "epochs": 1}})
    train(first, tmp_path / "run1", log=lambda *a: None)
    assert main(["train", "--data", str(project), "--init", str(tmp_path / "run1"), "--out", str(tmp_path / "run2"),
                 "--minutes", "0.2", "--set", "optim.epochs=1", "--set", "threads=1", "--set", "data.workers=0"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"own-data recipe: reading {project}, then timing")  # before the minute of sizing
    assert "24 frames" in out and f"start: {tmp_path / 'run1'}" in out
    cfg = yaml.safe_load((tmp_path / "run2" / "config.yaml").read_text())
    assert cfg["model"]["input_size"] == 64 and cfg["model"]["units"] == 1 and len(cfg["data"]["train"]) == 2
