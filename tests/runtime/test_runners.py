"""The runners of each backend (dunet.runtime.backends): same heatmaps whatever runs the network; bf16 close to
fp32; clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dunet import DunetError
from dunet.deploy import export_onnx
from dunet.engine.inference import TorchNetwork
from dunet.runtime.onnxruntime import OnnxPredictor
from tests.deploy.helpers import SIZE, argmax_landmarks, small_model

pytestmark = pytest.mark.kernels  # run again under an AVX2 cap by `make test`


def test_torch_fp32_predictor_returns_final_heatmaps_as_numpy():
    model = small_model(order=1)
    images = torch.rand(2, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    predictor = TorchNetwork(model, "fp32")
    got = predictor(images.numpy())
    assert got.dtype == np.float32 and got.shape == expected.shape
    assert np.abs(got - expected).max() <= 1e-5
    assert next(model.parameters()).dtype == torch.float32  # the caller's model is not converted


def test_bf16_predictor_is_close_to_fp32():
    model = small_model(order=1, landmarks=16)
    images = torch.rand(4, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    got = TorchNetwork(model, "bf16")(images)
    assert got.dtype == np.float32
    # bfloat16 keeps 8 bits of mantissa: a few percent of the heatmap range.
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    same = (argmax_landmarks(got) == argmax_landmarks(expected)).all(-1)
    assert same.mean() >= 0.75  # a random model's heatmaps are nearly flat, so a few peaks may swap


def test_onnx_and_torch_predictors_agree(tmp_path):
    model = small_model(arch="hourglass", channels=32)
    path = export_onnx(model, tmp_path / "m.onnx", SIZE, exporter="torchscript")
    images = np.random.default_rng(0).random((2, 3, SIZE, SIZE), dtype=np.float32)
    assert np.abs(OnnxPredictor(path, threads=1)(images) - TorchNetwork(model, "fp32")(images)).max() <= 1e-4


def test_predictor_input_errors(tmp_path):
    predictor = OnnxPredictor(export_onnx(small_model(), tmp_path / "m.onnx", SIZE, exporter="torchscript"), threads=1)
    with pytest.raises(DunetError, match=r"\(B, 3, S, S\)"):
        predictor(np.zeros((3, SIZE, SIZE), np.float32))
    with pytest.raises(DunetError, match=f"{SIZE}x{SIZE}"):
        predictor(np.zeros((1, 3, SIZE * 2, SIZE * 2), np.float32))
    with pytest.raises(DunetError, match="float"):
        predictor(np.zeros((1, 3, SIZE, SIZE), np.uint8))
    with pytest.raises(DunetError, match="precision"):
        TorchNetwork(small_model(), "fp16")


def test_onnx_predictor_file_errors(tmp_path):
    with pytest.raises(DunetError, match="no such ONNX file"):
        OnnxPredictor(tmp_path / "missing.onnx")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"this is not a protobuf")
    with pytest.raises(DunetError, match="bad.onnx: onnxruntime cannot load it"):
        OnnxPredictor(bad)
