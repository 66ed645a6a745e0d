import re

import pytest

from dunet import DunetError
from dunet.data import Augmentation, HeatmapCodec
from dunet.engine.config import load_config


def test_defaults_are_the_paper_settings():
    cfg = load_config(None)
    assert cfg.optim.optimizer == "rmsprop" and cfg.optim.lr == 2.5e-4 and cfg.optim.batch_size == 24
    assert cfg.optim.lr_at(0) == 2.5e-4
    assert cfg.optim.lr_at(30) == pytest.approx(5e-5)  # faces: /5 at 30, /2 at 60, /2 at 90
    assert cfg.optim.lr_at(95) == pytest.approx(2.5e-4 / 20)


def test_shipped_recipes_load():
    from pathlib import Path

    for path in sorted((Path(__file__).parents[2] / "dunet" / "configs").glob("*.yaml")):
        load_config(path)


def test_wrong_key_names_the_key_and_allowed_ones(tiny_config):
    with pytest.raises(DunetError, match=r"optim\.lrate.*allowed keys: .*optim\.lr"):
        load_config(tiny_config, ["optim.lrate=1"])


def test_wrong_value_names_allowed_values(tiny_config):
    with pytest.raises(DunetError, match=r"model\.arch.*dunet, hourglass"):
        load_config(tiny_config, ["model.arch=resnet"])
    with pytest.raises(DunetError, match="optim.epochs"):
        load_config(tiny_config, ["optim.epochs=many"])


def test_negative_decode_blur_is_refused(tiny_config):
    assert load_config(tiny_config, ["decode_blur=1.5"]).decode_blur == 1.5
    with pytest.raises(DunetError, match="decode_blur"):
        load_config(tiny_config, ["decode_blur=-1"])


def test_the_codec_and_the_augmentation_are_built_from_the_config_keys():
    cfg = load_config(None, ["model.input_size=128", "data.sigma=0.7", "decode_blur=1.5", "data.rotation=10",
                             "data.scale_range=[0.9, 1.1]", "data.flip=false", "data.occlusion=0.2"])
    assert cfg.codec == HeatmapCodec(128, sigma=0.7, blur=1.5)
    assert cfg.data.augmentation == Augmentation((0.9, 1.1), rotation=10.0, flip=False, occlusion=0.2)
    assert load_config(None, ["model.input_size=128"]).codec.sigma == 0.5  # 0 = 1 px at 64x64 heatmaps, scaled


def test_occlusion_share_is_checked(tiny_config):
    assert load_config(tiny_config, ["data.occlusion=0.5"]).data.occlusion == 0.5
    with pytest.raises(DunetError, match="data: occlusion 1.5"):
        load_config(tiny_config, ["data.occlusion=1.5"])


def test_false_means_false(tiny_config):
    assert load_config(tiny_config, ["model.memory_efficient=false"]).model.memory_efficient is False
    assert load_config(tiny_config, ["model.memory_efficient=true"]).model.memory_efficient is True


def test_missing_and_broken_files(tmp_path):
    with pytest.raises(DunetError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed")
    with pytest.raises(DunetError, match="bad.yaml"):
        load_config(bad)


def test_refine_supervision_per_pass(tiny_config):
    cfg = load_config(tiny_config, ["model.refine=true", "supervision=[detection,regression]"])
    assert cfg.supervision_per_head(1) == ["detection", "regression"]
    with pytest.raises(DunetError):
        load_config(tiny_config, ["supervision=[detection,regression,regression]"])


@pytest.mark.parametrize("override, problem", [
    ("optim.batch_size=0", "batch_size 0: must be >= 1"),
    ("optim.batch_size=-3", "batch_size -3: must be >= 1"),
    ("optim.lr=.nan", "lr nan: must be a finite number"),
    ("optim.lr=-0.1", "lr -0.1: must be > 0"),
    ("optim.weight_decay=.nan", "weight_decay nan: must be a finite number"),
    ("optim.weight_decay=-1", "weight_decay -1.0: must be >= 0"),
    ("data.val_fraction=.nan", "val_fraction nan"),
    ("data.val_fraction=2", "val_fraction 2.0: must be < 1.0"),
    ("data.sigma=.nan", "sigma nan: must be a finite number"),
    ("data.scale_range=[0,1.25]", "scale_range 0.0: must be > 0"),
    ("data.scale_range=[1.5,1.25]", "low must not exceed high"),
    ("data.scale_range=[1]", "give two numbers"),
    ("data.split_seed=-1", "split_seed -1: must be >= 0"),
    ("seed=-1", "seed -1: must be >= 0"),
    ("eval_every=0", "eval_every 0: must be >= 1"),
    ("max_val_samples=-1", "max_val_samples -1: must be >= 0"),
    ("decode_blur=.inf", "decode_blur inf: must be a finite number"),
    ("model.in_channels=1", "in_channels 1: training images are RGB"),
    ("model.units=100000", "units 100000: must be <= 64"),
    ("model.landmarks=1000000000", "landmarks 1000000000: must be <= 1024"),
])
def test_values_are_range_checked_where_they_enter(tiny_config, override, problem):
    with pytest.raises(DunetError, match=re.escape(problem)) as caught:
        load_config(tiny_config, [override])
    assert "\n" not in str(caught.value)


def test_malformed_yaml_in_set_names_the_override(tiny_config):
    with pytest.raises(DunetError, match=r"--set 'model.units=\[1,': the value is not valid YAML"):
        load_config(tiny_config, ["model.units=[1,"])


def test_flag_range_refuses_bad_flags_at_parse_time(capsys):
    from dunet.cli import main

    for argv, problem in ((["eval", "run", "--data", "synthetic:4", "--limit", "-1"], "argument --limit: -1: must be >= 0"),
                          (["eval", "run", "--data", "synthetic:4", "--batch-size", "0"], "argument --batch-size: 0: must be >= 1"),
                          (["data", "show", "synthetic:4", "--out", "x", "-n", "abc"], "argument -n: expected an integer")):
        with pytest.raises(SystemExit):
            main(argv)
        assert problem in capsys.readouterr().err


def test_dunet_info_refuses_an_absurd_model_at_once(capsys):
    from dunet.cli import main

    assert main(["info", "--units", "100000"]) == 2
    assert "units 100000: must be <= 64" in capsys.readouterr().err


def test_a_binary_file_as_the_recipe_is_one_line(tmp_path):
    """A model file given as the config was a UnicodeDecodeError traceback."""
    recipe = tmp_path / "model.safetensors"
    recipe.write_bytes(b"\x08\x00\x00\x00\xff\xfe\x89PNG" * 10)
    with pytest.raises(DunetError, match=f"config file {recipe}: not a text file \\(byte 4 is not UTF-8\\)"):
        load_config(recipe)
    recipe.write_bytes(b"model: 1\n\x00\x01")  # UTF-8, but characters YAML refuses: its message had two lines
    with pytest.raises(DunetError) as caught:
        load_config(recipe)
    assert "not valid YAML (unacceptable character #x0000" in str(caught.value) and "\n" not in str(caught.value)


def test_a_malformed_recipe_is_one_line_naming_the_file_and_place(tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text("model:\n  units: [4\n")
    with pytest.raises(DunetError) as err:
        load_config(recipe)
    assert str(recipe) in str(err.value) and "line 3" in str(err.value) and "\n" not in str(err.value)
