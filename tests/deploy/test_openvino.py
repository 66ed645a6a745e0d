"""OpenVINO: fp32 parity with PyTorch, bf16 close, int8 keeps the heads in float and
binary weights exact, metadata survives, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from dunet import DunetError
from dunet.deploy import export_onnx, quantize_openvino_int8, save_openvino
from dunet.runtime.openvino import OpenVinoPredictor
from tests.deploy.helpers import SIZE, argmax_landmarks, faces_300w, small_model

ov = pytest.importorskip("openvino")
pytestmark = pytest.mark.kernels  # run again under an AVX2 cap by `make test`


def _export(model, tmp_path, **kwargs):
    return export_onnx(model, tmp_path / "m.onnx", SIZE, exporter="torchscript", **kwargs)


def _images(count: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((count, 3, SIZE, SIZE), dtype=np.float32)


@pytest.mark.parametrize("arch", ["dunet", "hourglass"])
def test_fp32_matches_pytorch_for_any_batch(tmp_path, arch):
    model = small_model(arch=arch, channels=32)
    path = _export(model, tmp_path)
    predictor = OpenVinoPredictor(path, "fp32", threads=1)
    for count in (1, 3):
        images = _images(count, seed=count)
        with torch.no_grad():
            expected = model(torch.from_numpy(images))[-1].numpy()
        assert np.abs(predictor(images) - expected).max() <= 1e-4
    # One image runs the copy with the batch fixed to 1 (faster kernels), a batch the dynamic model.
    assert predictor.request.model_inputs[0].get_partial_shape().is_static
    assert predictor.last_request is not predictor.request
    # The file keeps every head; what runs computes only the final one.
    assert len(ov.Core().read_model(str(path)).outputs) == len(model(torch.from_numpy(_images(1)))) > 1
    assert len(predictor.request.model_outputs) == len(predictor.last_request.model_outputs) == 1


def test_streams_split_a_batch_and_keep_its_order(tmp_path):
    model = small_model(order=1, landmarks=16)
    path = _export(model, tmp_path)
    images = _images(5)
    single = OpenVinoPredictor(path, "fp32", threads=2)
    streamed = OpenVinoPredictor(path, "fp32", threads=2, streams=2)
    assert streamed.streams == 2
    expected = single(images)
    assert np.abs(streamed(images) - expected).max() <= 1e-5  # 3 + 2 images on two streams
    assert np.abs(streamed(images[:1]) - expected[:1]).max() <= 1e-5  # one image: one request
    fixed = export_onnx(model, tmp_path / "fixed.onnx", SIZE, exporter="torchscript", dynamic_batch=False)
    assert OpenVinoPredictor(fixed, "fp32", threads=2, streams=2).streams == 1
    with pytest.raises(DunetError, match="streams"):
        OpenVinoPredictor(path, streams=0)


def test_bf16_is_close_to_fp32(tmp_path):
    model = small_model(order=1, landmarks=16)
    path = _export(model, tmp_path)
    images = _images(4)
    expected = OpenVinoPredictor(path, "fp32", threads=1)(images)
    got = OpenVinoPredictor(path, "bf16", threads=1)(images)
    assert np.abs(got - expected).max() <= 0.05 * np.abs(expected).max()
    assert (argmax_landmarks(got) == argmax_landmarks(expected)).all(-1).mean() >= 0.75


def _conv_inputs(path) -> dict[str, str]:
    """Convolution name -> type of the op feeding its activation input, in an OpenVINO file."""
    model = ov.Core().read_model(str(path))
    return {op.get_friendly_name(): op.input_value(0).get_node().get_type_name()
            for op in model.get_ordered_ops() if op.get_type_name() == "Convolution"}


def test_int8_keeps_only_the_heads_float_and_metadata(tmp_path):
    model = small_model(units=3, loss_num=2)
    fp32 = export_onnx(model, tmp_path / "m.onnx", SIZE, exporter="torchscript", metadata={"spec": "s"})
    int8 = quantize_openvino_int8(fp32, tmp_path / "m8.xml", [_images(2)])
    feeds = _conv_inputs(int8)
    float_convs = [name for name, feed in feeds.items() if feed != "FakeQuantize"]
    assert len(float_convs) == 2 and len(feeds) > 10  # the two heads; the stem reads the image through int8
    assert "Parameter" not in feeds.values()
    metadata = OpenVinoPredictor(int8, threads=1).metadata
    assert metadata["precision"] == "int8-openvino" and metadata["spec"] == "s"
    ir = save_openvino(fp32, tmp_path / "float.xml")
    assert OpenVinoPredictor(ir, threads=1).metadata["spec"] == "s"
    assert "FakeQuantize" not in _conv_inputs(ir).values()


def _weight_codes(path) -> list[np.ndarray]:
    """The int8 weight constants of an OpenVINO int8 IR."""
    model = ov.Core().read_model(str(path))
    return [op.get_data() for op in model.get_ordered_ops()
            if op.get_type_name() == "Constant" and op.get_element_type() == ov.Type.i8]


@pytest.mark.parametrize("quant", ["bw-alpha-8/1/8", "tw"])
def test_binary_and_ternary_weights_are_exact_int8_codes(tmp_path, quant):
    model = small_model(quant=quant)
    fp32 = _export(model, tmp_path, keep_input_quantizers=False)
    codes = _weight_codes(quantize_openvino_int8(fp32, tmp_path / "m8.xml", [_images(1)]))
    stem, *quantized = codes  # the stem is float in the model (the paper's first layer): any 7-bit codes
    assert len(quantized) == len(_conv_inputs(fp32)) - 3 and np.abs(stem).max() <= 64
    for weight in quantized:  # {-a, 0, +a} per output filter with scale a / 127: no rounding at all
        assert set(np.unique(weight)) <= {-127, 0, 127}


def test_int8_heatmaps_stay_close_to_fp32_on_real_faces(tmp_path, shared_data):
    faces, _ = faces_300w(shared_data, 24)
    model = small_model(units=2, landmarks=16)
    fp32 = _export(model, tmp_path)
    int8 = quantize_openvino_int8(fp32, tmp_path / "m8.xml", [faces[:8], faces[8:16]])
    test = faces[16:]
    expected = OpenVinoPredictor(fp32, "fp32", threads=1)(test)
    got = OpenVinoPredictor(int8, "fp32", threads=1)(test)
    noise = np.sqrt(np.mean((got - expected) ** 2))
    assert noise <= 0.1 * np.sqrt(np.mean((expected - expected.mean()) ** 2))  # above 20 dB


def test_errors_name_the_file(tmp_path):
    with pytest.raises(DunetError, match="no such file"):
        OpenVinoPredictor(tmp_path / "missing.onnx")
    with pytest.raises(DunetError, match=r"\.onnx.*\.xml"):
        OpenVinoPredictor(tmp_path / "model.pt")
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not a model")
    with pytest.raises(DunetError, match="garbage.onnx: OpenVINO cannot read it"):
        OpenVinoPredictor(garbage)
    fp32 = _export(small_model(), tmp_path)
    with pytest.raises(DunetError, match="precision"):
        OpenVinoPredictor(fp32, "int4")
    with pytest.raises(DunetError, match="calibration set is empty"):
        quantize_openvino_int8(fp32, tmp_path / "m8.xml", [])
    with pytest.raises(DunetError, match=r"must end in \.xml"):
        quantize_openvino_int8(fp32, tmp_path / "m8.onnx", [_images(1)])
    with pytest.raises(DunetError, match=f"{SIZE}x{SIZE}"):
        OpenVinoPredictor(fp32, threads=1)(np.zeros((1, 3, SIZE * 2, SIZE * 2), np.float32))


# Two OpenVINO models made and released in this order used to leave the thread's alternate signal stack on freed
# memory (OpenVINO's CPU plugin 2026.4): the next Ctrl-C killed the program with SIGSEGV, silently. In a child
# process, so that the crash fails this test alone.
TWO_MODELS_THEN_CTRL_C = """
import os, signal
import numpy as np
import dunet
signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own; a shell may start a child with it ignored
image = np.full((120, 100, 3), 128, np.uint8)
first = dunet.load("300w-dunet2", backend="openvino", threads=1)
first.predict(image, box=(10, 10, 80, 90))
second = dunet.load("300w-dunet2-w80", backend="openvino", threads=1)
second.predict(image, box=(10, 10, 80, 90))
del first, second
try:
    os.kill(os.getpid(), signal.SIGINT)
except KeyboardInterrupt:
    print("KeyboardInterrupt")
"""


def test_ctrl_c_after_releasing_two_models_is_a_keyboard_interrupt():
    import subprocess
    import sys

    from tests.processes import how_it_ended

    proc = subprocess.run([sys.executable, "-c", TWO_MODELS_THEN_CTRL_C], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and proc.stdout.strip() == "KeyboardInterrupt", how_it_ended(proc)


def test_the_signal_stack_is_the_callers_after_compiling_and_releasing(tmp_path):
    import ctypes

    from dunet.runtime.openvino import _SignalStack

    def signal_stack() -> tuple:
        stack = _SignalStack()
        ctypes.CDLL(None).sigaltstack(None, ctypes.byref(stack))
        return stack.ss_sp, stack.ss_size, stack.ss_flags

    path = _export(small_model(), tmp_path)
    before = signal_stack()
    first = OpenVinoPredictor(path, precision="fp32", threads=1)
    second = OpenVinoPredictor(path, precision="fp32", threads=1, streams=2)
    second(_images(4))  # the batched and the throughput models too
    assert signal_stack() == before
    del first, second
    assert signal_stack() == before
