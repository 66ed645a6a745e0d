"""ONNX export: onnxruntime matches PyTorch within 1e-4 for every architecture, with a dynamic batch."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch

from dunet import DunetError
from dunet.deploy import export_onnx, output_names, read_metadata
from dunet.runtime.onnxruntime import OnnxPredictor
from tests.deploy.helpers import SIZE, small_model

TOLERANCE = 1e-4

CONFIGS = {
    "dunet-order1": dict(order=1),
    "dunet-order2": dict(units=3, order=2),
    "dunet-refine": dict(refine=True),
    "dunet-memory-efficient-hierarchical": dict(memory_efficient=True, block="hierarchical", loss_num=1),
    "hourglass-bottleneck": dict(arch="hourglass", channels=32),
    "hourglass-hierarchical": dict(arch="hourglass", channels=32, block="hierarchical"),
}


def _check_parity(model: torch.nn.Module, path, batches=(1, 3)) -> None:
    proto = onnx.load(str(path))
    with torch.no_grad():
        heads = len(model(torch.rand(1, 3, SIZE, SIZE)))
    assert [i.name for i in proto.graph.input] == ["images"]
    assert [o.name for o in proto.graph.output] == output_names(heads)
    session = OnnxPredictor(path).session
    for batch in batches:
        images = torch.rand(batch, 3, SIZE, SIZE)
        with torch.no_grad():
            expected = [t.numpy() for t in model(images)]
        got = session.run(None, {"images": images.numpy()})
        assert len(got) == len(expected)
        for a, b in zip(got, expected):
            assert a.shape == b.shape == (batch, model.cfg.landmarks, SIZE // 4, SIZE // 4)
            assert np.abs(a - b).max() <= TOLERANCE


@pytest.mark.parametrize("name", CONFIGS)
def test_torchscript_export_matches_pytorch(tmp_path, name):
    model = small_model(**CONFIGS[name])
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript")
    _check_parity(model, path)


@pytest.mark.slow
def test_dynamo_export_matches_pytorch(tmp_path):
    """The default exporter, on the most involved graph (two passes, order 2, hierarchical blocks)."""
    model = small_model(units=3, order=2, refine=True, block="hierarchical")
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="dynamo")
    _check_parity(model, path)


def test_export_leaves_the_model_alone_and_exports_eval_mode(tmp_path):
    model = small_model(order=1).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript")
    assert model.training
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    _check_parity(model.eval(), path, batches=(2,))


def test_fixed_batch_export_and_predictor_chunks(tmp_path):
    model = small_model(order=1)
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript", dynamic_batch=False)
    predictor = OnnxPredictor(path)
    assert predictor.fixed_batch == 1 and predictor.input_size == SIZE
    images = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    assert np.abs(predictor(images) - expected).max() <= TOLERANCE


def test_metadata_round_trip(tmp_path):
    model = small_model(arch="hourglass", channels=32, units=2, loss_num=1)
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript", metadata={"spec": '{"k": 5}'})
    meta = read_metadata(path)
    assert meta["input_size"] == str(SIZE) and meta["heads"] == "1" and meta["spec"] == '{"k": 5}'
    assert '"arch": "hourglass"' in meta["model_config"]
    assert OnnxPredictor(path).metadata == meta


def test_export_errors_are_dunet_errors(tmp_path):
    model = small_model()
    with pytest.raises(DunetError, match="must end in .onnx"):
        export_onnx(model, tmp_path / "model.bin", SIZE)
    with pytest.raises(DunetError, match="does not exist"):
        export_onnx(model, tmp_path / "missing" / "model.onnx", SIZE)
    with pytest.raises(DunetError, match="unknown exporter"):
        export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="jit")
    with pytest.raises(DunetError, match="multiple of"):  # a size the model cannot take fails on the trial run
        export_onnx(model, tmp_path / "model.onnx", SIZE + 4, exporter="torchscript")


def test_binary_weight_model_exports_with_its_weights(tmp_path):
    model = small_model(quant="bw-alpha")
    _check_parity(model, export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript"))


def test_binary_input_model_exports_its_signs_and_refuses_int8(tmp_path):
    """1-bit inputs are a sign in the graph; int8 deployment, which replaces the input quantizers with
    its own 8-bit grid, is refused in one line."""
    model = small_model(arch="hourglass", block="hierarchical", quant="bw-alpha-1/1/32")
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript")
    _check_parity(model, path)
    assert "Where" in {node.op_type for node in onnx.load(str(path)).graph.node}
    with pytest.raises(DunetError, match="binary \\(sign\\) inputs .* int8"):
        export_onnx(model, tmp_path / "plain.onnx", SIZE, exporter="torchscript", keep_input_quantizers=False)


@pytest.mark.slow
@pytest.mark.parametrize("quant", ["bw-alpha-8/1/8", "tw-alpha-8/2/8"])
def test_k_bit_input_models_keep_their_input_quantizers(tmp_path, quant):
    """k-bit inputs (per-sample scale) are exported too. Float rounding in the ops before a quantizer
    can push a value across a rounding boundary, one code step; everything else matches to 1e-4."""
    model = small_model(quant=quant)
    path = export_onnx(model, tmp_path / "model.onnx", SIZE, exporter="torchscript")
    images = torch.rand(3, 3, SIZE, SIZE)
    with torch.no_grad():
        expected = model(images)[-1].numpy()
    got = OnnxPredictor(path)(images)
    error = np.abs(got - expected)
    assert np.mean(error <= TOLERANCE) >= 0.99
    assert error.max() <= 0.02 * np.abs(expected).max()
    stripped = export_onnx(model, tmp_path / "plain.onnx", SIZE, exporter="torchscript", keep_input_quantizers=False)
    assert np.abs(OnnxPredictor(stripped)(images) - expected).max() > error.max()  # the quantizers were kept
