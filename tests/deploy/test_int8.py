"""int8, static and dynamic: first conv and heads stay float, binary / ternary weights are exact, outputs stay close."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from dunet import DunetError
from dunet.deploy import export_onnx, float_layers, quantize_onnx_int8
from dunet.runtime.onnxruntime import OnnxPredictor
from tests.deploy.helpers import SIZE, faces_300w, small_model


pytestmark = pytest.mark.kernels  # run again under an AVX2 cap by `make test`


def _export(model, tmp_path, **kwargs):
    return export_onnx(model, tmp_path / "m.onnx", SIZE, exporter="torchscript", **kwargs)


def _dequantized_weights(path) -> dict[str, np.ndarray]:
    """Conv name -> its int8 weights times their per-channel scales, as the int8 file stores them."""
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    weights = {}
    for node in model.graph.node:
        dq = producer.get(node.input[1]) if node.op_type == "Conv" else None
        if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in init:
            codes, scale = init[dq.input[0]], init[dq.input[1]]
            assert codes.dtype == np.int8 and scale.shape == (codes.shape[0],)  # per output channel
            weights[node.name] = codes.astype(np.float32) * scale[:, None, None, None]
    return weights


def test_first_conv_and_heads_stay_float(tmp_path):
    model = small_model(units=3, loss_num=2)
    fp32 = _export(model, tmp_path)
    first, heads = float_layers(onnx.load(str(fp32)))
    assert len(first) == 1 and len(heads) == 2
    int8 = quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [np.random.rand(2, 3, SIZE, SIZE).astype(np.float32)])
    quantized = _dequantized_weights(int8)
    convs = [n.name for n in onnx.load(str(int8)).graph.node if n.op_type == "Conv"]
    assert quantized and not set(quantized) & set(first + heads)
    assert set(convs) - set(quantized) == set(first + heads)


def _float_conv_weights(path) -> dict[str, np.ndarray]:
    model = onnx.load(str(path))
    init = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    return {n.name: init[n.input[1]] for n in model.graph.node if n.op_type == "Conv" and n.input[1] in init}


@pytest.mark.parametrize("quant", ["bw-alpha", "tw", "bw-alpha-8/1/8"])
def test_binary_and_ternary_weights_are_exact_in_int8(tmp_path, quant):
    model = small_model(quant=quant)
    fp32 = _export(model, tmp_path, keep_input_quantizers=False)
    int8 = quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [np.random.rand(1, 3, SIZE, SIZE).astype(np.float32)])
    float_weights = _float_conv_weights(fp32)
    stored = _dequantized_weights(int8)
    assert len(stored) == len(float_weights) - 3  # all but the stem and the two heads
    for name, weight in stored.items():
        expected = float_weights[name]
        # The exporter may fold a following BN into the conv: still {-a, 0, +a} per output filter.
        peak = np.abs(expected).max(axis=(1, 2, 3), keepdims=True)
        assert set(np.unique(np.round(expected / peak, 5))) <= {-1.0, 0.0, 1.0}
        # ... so int8 codes -127, 0, 127 times a / 127 give the float weights back to float rounding.
        assert np.abs(weight - expected).max() <= 1e-6 * np.abs(expected).max()


@pytest.mark.slow
def test_int8_heatmaps_stay_close_to_fp32_on_real_faces(tmp_path, shared_data):
    faces, _ = faces_300w(shared_data, 24)
    model = small_model(units=2, landmarks=16)
    fp32 = _export(model, tmp_path)
    int8 = quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [faces[:8], faces[8:16]])
    test = faces[16:]
    expected = OnnxPredictor(fp32, threads=1)(test)
    got = OnnxPredictor(int8, threads=1)(test)
    assert OnnxPredictor(int8).metadata["precision"] == "int8"
    # Signal-to-noise above 20 dB: a wrong scale or zero point gives noise as large as the signal.
    noise = np.sqrt(np.mean((got - expected) ** 2))
    signal = np.sqrt(np.mean((expected - expected.mean()) ** 2))
    assert noise <= 0.1 * signal


def _op_counts(path) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in onnx.load(str(path)).graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts


@pytest.mark.parametrize("quant", ["bw-alpha-8/1/8", "tw"])
def test_dynamic_int8_runs_integer_convs_and_keeps_binary_weights_exact(tmp_path, quant):
    model = small_model(quant=quant)
    fp32 = _export(model, tmp_path, keep_input_quantizers=False)
    int8 = quantize_onnx_int8(fp32, tmp_path / "m8.onnx", mode="dynamic")
    float_weights = _float_conv_weights(fp32)
    counts = _op_counts(int8)
    assert counts["Conv"] == 3 and counts["ConvInteger"] == len(float_weights) - 3  # stem and two heads stay float
    proto = onnx.load(str(int8))
    init = {t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "ConvInteger":
            codes = init[node.input[1]]
            assert codes.dtype == np.int8
            assert set(np.unique(codes)) <= {-127, 0, 127}  # {-a, 0, +a} per filter: exact codes
    assert OnnxPredictor(int8).metadata["precision"] == "int8-dynamic"


def test_dynamic_int8_follows_the_training_time_model_of_a_qig_network(tmp_path):
    """With batch 1, dynamic int8 quantizes each conv input with its own scale, as the training-time
    k-bit input quantizer does, so its heatmaps stay close to the torch model's."""
    model = small_model(quant="bw-alpha-8/1/8")
    images = np.random.default_rng(0).random((3, 1, 3, SIZE, SIZE), dtype=np.float32)
    fp32 = _export(model, tmp_path, keep_input_quantizers=False)
    predictor = OnnxPredictor(quantize_onnx_int8(fp32, tmp_path / "m8.onnx", mode="dynamic"), threads=1)
    for image in images:
        with torch.no_grad():
            expected = model(torch.from_numpy(image))[-1].numpy()
        got = predictor(image)
        noise = np.sqrt(np.mean((got - expected) ** 2))
        assert noise <= 0.1 * np.sqrt(np.mean((expected - expected.mean()) ** 2))


def test_int8_errors(tmp_path):
    fp32 = _export(small_model(), tmp_path)
    with pytest.raises(DunetError, match="calibration set is empty"):
        quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [])
    with pytest.raises(DunetError, match=r"\(B, 3, S, S\)"):
        quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [np.zeros((2, 2), np.float32)])
    with pytest.raises(DunetError, match="no such ONNX file"):
        quantize_onnx_int8(tmp_path / "missing.onnx", tmp_path / "m8.onnx", [np.zeros((1, 3, SIZE, SIZE))])
    with pytest.raises(DunetError, match="unknown mode"):
        quantize_onnx_int8(fp32, tmp_path / "m8.onnx", mode="float4")
    with pytest.raises(DunetError, match="calibration method"):
        quantize_onnx_int8(fp32, tmp_path / "m8.onnx", [np.zeros((1, 3, SIZE, SIZE))], method="mse")
