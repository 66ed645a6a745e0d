"""build_network: the OpenVINO network computes what the PyTorch model computes in eval mode."""

import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from dunet import DunetError
from dunet.data.synthetic import render_face
from dunet.runtime.openvino import core
from dunet.engine.inference import load_torch_model
from dunet.models import ModelConfig, build_model
from dunet.quant.packing import FORMAT as PACKED, save_packed
from dunet.runtime.graph import build_network
from dunet.runtime.weights import read_weights
from tests.conftest import REPO

PRETRAINED = REPO / "dunet" / "pretrained"
SHIPPED = [entry["file"] for entry in json.loads((PRETRAINED / "models.json").read_text())["models"]]
SMALL = dict(landmarks=5, channels=16, growth=8, bottleneck=16)


def randomised(cfg: ModelConfig) -> nn.Module:
    """An eval-mode model whose BN statistics and affine parameters are far from their initial values."""
    model = build_model(cfg)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.3, 2.0)
                module.weight.uniform_(0.5, 1.5)
                module.bias.uniform_(-0.3, 0.3)
    return model.eval()


def run(network, images: np.ndarray) -> np.ndarray:
    compiled = core().compile_model(network, "CPU", {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": 1})
    return compiled(images)[0]


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    assert got.shape == expected.shape
    scale = float(np.abs(expected).max())
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * scale)


@pytest.mark.parametrize("changes", [
    dict(units=1, order=0, levels=1, input_size=32),
    dict(units=2, order=1, levels=2, input_size=64),
    dict(units=3, order=2, levels=2, input_size=32),
    dict(units=3, order=1, levels=1, input_size=32, loss_num=2),
    dict(units=3, order=0, levels=2, input_size=64, loss_num=1),
    dict(units=2, order=1, levels=2, input_size=32, refine=True),
    dict(units=3, order=2, levels=1, input_size=32, refine=True, loss_num=2),
    dict(units=2, order=1, levels=2, input_size=32, channels=24, growth=4, bottleneck=12, landmarks=3),
])
def test_network_computes_the_final_heatmaps_of_the_pytorch_model(changes):
    cfg = ModelConfig(**{**SMALL, **changes})
    model = randomised(cfg)
    weights = {name: t.numpy() for name, t in model.state_dict().items()}
    network = build_network(cfg, weights)
    assert [i.get_any_name() for i in network.inputs] == ["images"]
    assert [o.get_any_name() for o in network.outputs] == ["heatmaps"]
    images = torch.rand(3, 3, cfg.input_size, cfg.input_size)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    assert_close(run(network, images.numpy()), expected)
    assert_close(run(network, images[:1].numpy()), expected[:1])  # the batch is dynamic


@pytest.mark.parametrize("quant", ["bw", "bw-alpha", "tw", "tw-alpha", "bw-alpha-32/1/8"])
def test_packed_quantized_model(tmp_path, quant):
    cfg = ModelConfig(**SMALL, units=2, levels=2, input_size=32, quant=quant)
    model = randomised(cfg)
    metadata, weights = read_weights(save_packed(model, {}, tmp_path / "m.packed.safetensors"))
    assert metadata["format"] == PACKED
    images = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    assert_close(run(build_network(cfg, weights, quantized_weights_baked=True), images.numpy()), expected)
    with pytest.raises(DunetError, match="a quantized checkpoint runs without PyTorch once packed"):
        build_network(cfg, {name: t.numpy() for name, t in model.state_dict().items()})


@pytest.mark.parametrize("changes", [
    dict(arch="hourglass"), dict(block="hierarchical"), dict(quant="8/1/8"), dict(quant="bw-alpha-1/1/32"),
])
def test_models_that_need_pytorch_say_so(changes):
    cfg = ModelConfig(**SMALL, units=1, levels=1, input_size=32, **changes)
    weights = {name: t.numpy() for name, t in build_model(cfg).state_dict().items()}
    with pytest.raises(DunetError, match=r"runs with the PyTorch backend only \(pip install 'dunet\[train\]'\)"):
        build_network(cfg, weights, quantized_weights_baked=True)


def test_weights_that_do_not_fit_name_the_tensor():
    cfg = ModelConfig(**SMALL, units=2, levels=1, input_size=32)
    weights = {name: t.numpy() for name, t in build_model(cfg).state_dict().items()}
    with pytest.raises(DunetError, match=r"tensor 'heads.0.conv.weight' has shape \(5, 16, 1, 1\) but the model "
                                         r"needs \(7, 16, 1, 1\)"):
        build_network(cfg.replace(landmarks=7), weights)
    del weights["down.0.layers.1.squeeze.norm.running_var"]
    with pytest.raises(DunetError, match="no tensor 'down.0.layers.1.squeeze.norm.running_var'"):
        build_network(cfg, weights)


def faces(size: int, count: int = 3) -> np.ndarray:
    """(count, 3, size, size) crops of generated faces, RGB in [0, 1]."""
    return np.stack([render_face(7, i, size=size) for i in range(count)]).transpose(0, 3, 1, 2) / np.float32(255)


@pytest.mark.slow
@pytest.mark.parametrize("file", SHIPPED)
def test_shipped_model_gives_the_landmarks_of_pytorch(file):
    path = PRETRAINED / file
    landmarker = load_torch_model(path)
    metadata, weights = read_weights(path)
    cfg = landmarker.card.network
    images = faces(cfg.input_size).astype(np.float32)
    with torch.no_grad():
        expected = landmarker.model.eval()(torch.from_numpy(images))[-1].numpy()
    got = run(build_network(cfg, weights, quantized_weights_baked=metadata["format"] == PACKED), images)
    codec = landmarker.card.codec
    points, _ = codec.decode(got)
    expected_points, _ = codec.decode(expected)
    assert np.abs(points - expected_points).max() < 0.05


def test_runs_a_packed_model_without_pytorch():
    code = f"""
import json, sys
import numpy as np
from dunet.card import card_from_metadata
from dunet.runtime.graph import build_network
from dunet.runtime.openvino import core
from dunet.runtime.weights import read_weights
metadata, weights = read_weights({str(PRETRAINED / "300w-dunet4-bw-alpha.packed.safetensors")!r})
cfg = card_from_metadata(metadata, "packed").network
network = build_network(cfg, weights, quantized_weights_baked=True)
heatmaps = core().compile_model(network, "CPU")(np.zeros((1, 3, cfg.input_size, cfg.input_size), np.float32))[0]
assert heatmaps.shape == (1, 68, cfg.input_size // 4, cfg.input_size // 4), heatmaps.shape
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"
