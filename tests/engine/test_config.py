import pytest

from dunet import DunetError
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
