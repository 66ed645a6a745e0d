"""OpenVINO: the fastest CPU runtime measured on this machine (bench/infer.py, docs/research/deployment.md).

OpenVINO fuses each BN-ReLU into one pass and runs convolutions on this Xeon's AMX tiles, in bfloat16
for a float model and in int8 for a model quantized here. Both read an ONNX file from `export_onnx`.

    predictor = OpenVinoPredictor("model.onnx", precision="bf16")    # float model, bf16 kernels
    quantize_openvino_int8("model.onnx", "model-int8.xml", calibration=[batch, ...])
    predictor = OpenVinoPredictor("model-int8.xml")                   # int8 convolutions

int8 is post-training quantization by NNCF (OpenVINO's own quantizer): symmetric int8 weights per
output channel, activations with ranges from the calibration images. The heads stay in float; the stem's
7x7 convolution, which a binary model keeps in full precision as in the paper, is int8 here: it reads 8-bit
pixels anyway, and in float it took a fifth of a small model's time. Binary and ternary weights are exact in
int8 (see dunet.deploy.int8). openvino and nncf are the optional `openvino` extra; imported only when used.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import gc
import logging
import platform
from pathlib import Path

import numpy as np
from torch import Tensor

from dunet import DunetError
from dunet.deploy.int8 import calibration_set
from dunet.deploy.onnx_export import read_metadata
from dunet.deploy.runtime import as_batch

HINTS = {"fp32": "f32", "bf16": "bf16"}  # dunet precision -> OpenVINO INFERENCE_PRECISION_HINT
SUFFIXES = (".onnx", ".xml")
RT_INFO_KEY = "dunet"


def _openvino():
    try:
        import openvino
    except ImportError:
        raise DunetError("the OpenVINO backend needs the openvino package: pip install 'dunet[openvino]'") from None
    return openvino


@functools.cache
def _core():
    """One OpenVINO Core per process, so one CPU plugin: each Core made its own plugin instance (see below)."""
    return _openvino().Core()


def _native_bf16() -> bool:
    import torch

    from dunet.engine.hardware import native_bf16

    return native_bf16(torch.device("cpu"))[0]


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def _signal_stack_kept():
    """Give the calling thread back its alternate signal stack (sigaltstack) after OpenVINO work.

    OpenVINO's CPU plugin (2026.4) sets a stack of its own when a plugin instance is made and, when it is
    destroyed, sets back the one it found. Two instances that do not end in the reverse order of their start
    leave the thread's alternate stack on memory already unmapped. The next signal whose handler runs there
    (every Python handler does: Ctrl-C, SIGTERM, the SIGCHLD handler of PyTorch's DataLoader) then kills the
    process with SIGSEGV, before any handler or faulthandler can say a word. tests/deploy/test_openvino.py
    reproduces it."""
    if platform.system() != "Linux":
        yield
        return
    sigaltstack = ctypes.CDLL(None).sigaltstack
    before = _SignalStack()
    sigaltstack(None, ctypes.byref(before))
    try:
        yield
    finally:
        sigaltstack(ctypes.byref(before), None)


def _read_model(path: Path):
    if path.suffix not in SUFFIXES:
        raise DunetError(f"{path}: OpenVINO reads an ONNX file (.onnx) or an OpenVINO IR (.xml)")
    if not path.is_file():
        raise DunetError(f"{path}: no such file")
    try:
        return _core().read_model(str(path))
    except DunetError:
        raise
    except Exception as err:  # OpenVINO raises RuntimeError with its own message for bad files
        raise DunetError(f"{path}: OpenVINO cannot read it ({_reason(err)})") from None


def _reason(err: Exception) -> str:
    """The line of an OpenVINO error that says what is wrong: its messages start with the C++ source line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith("Exception from ")), type(err).__name__)


def _metadata(path: Path, model) -> dict[str, str]:
    """The `dunet.*` metadata: ONNX metadata_props, or the IR's rt_info written by quantize_openvino_int8."""
    if path.suffix == ".onnx":
        return read_metadata(path)
    rt_info = model.get_rt_info()
    if RT_INFO_KEY not in rt_info:
        return {}
    return {key: value.astype(str) for key, value in rt_info[RT_INFO_KEY].items()}


class OpenVinoPredictor:
    """An exported ONNX file or an OpenVINO IR run by OpenVINO on the CPU.

    `precision` is the precision of the float layers: all of them for a float model, the first and last
    layers of an int8 IR. `streams`: a batch of at least that many images is split into `streams` parts
    run at once, each on threads / streams threads (OpenVINO's throughput mode: about 8 % more images/s
    for DU-Net(8) at batch 8 on 2 cores, bench/infer.py); smaller batches and fixed-batch files run as
    one request on all threads (latency mode); the throughput mode is compiled on first use. `properties`: more
    OpenVINO CPU properties, e.g. {"PERF_COUNT": True}. Not for concurrent calls from several threads."""

    backend = "openvino"

    def __init__(self, path: str | Path, precision: str = "bf16", threads: int = 2, streams: int = 1,
                 properties: dict | None = None):
        if precision not in HINTS:
            raise DunetError(f"precision {precision!r}: choose one of {', '.join(HINTS)}")
        if streams < 1:
            raise DunetError(f"streams must be at least 1, got {streams}")
        # OpenVINO computes bf16 only on a CPU that has it and runs fp32 elsewhere; under a oneDNN ISA cap its bf16
        # hint finds no kernels at all. So ask for what will run, and say so.
        self.path, self.precision = Path(path), precision if precision == "fp32" or _native_bf16() else "fp32"
        model = _read_model(self.path)
        self.metadata = _metadata(self.path, model)
        inputs = model.inputs
        if len(inputs) != 1 or inputs[0].get_partial_shape().rank.get_length() != 4:
            raise DunetError(f"{self.path}: expected one image input (B, 3, S, S), found "
                             f"{[str(i.get_partial_shape()) for i in inputs]}")
        shape = inputs[0].get_partial_shape()
        self.input_size = shape[2].get_length() if shape[2].is_static else None
        self.streams = 1 if shape[0].is_static else min(streams, threads)
        self._model = model = _final_output_only(model)
        self._config = {"INFERENCE_PRECISION_HINT": HINTS[self.precision], "INFERENCE_NUM_THREADS": threads,
                        **(properties or {})}
        # One image at a time (the Python API's predict, video) runs a copy whose batch is fixed to 1: OpenVINO's
        # kernels for a static shape were about 12 % faster on a DU-Net(2) than those for a dynamic batch.
        self.fixed_batch = shape[0].is_static
        single = model if self.fixed_batch else _with_batch(model, 1)
        compiled = self._compile(single, {"PERFORMANCE_HINT": "LATENCY"})  # now: a file OpenVINO cannot run fails here
        self.request = compiled.create_infer_request()
        self._batched = None  # the dynamic-batch model, compiled on the first batch of several images
        self._throughput = None  # compiled on the first batch that is split over streams

    def _compile(self, model, config: dict):
        try:
            with _signal_stack_kept():
                return _core().compile_model(model, "CPU", {**self._config, **config})
        except Exception as err:
            raise DunetError(f"{self.path}: OpenVINO cannot compile it ({type(err).__name__}: {err})") from None

    def __del__(self):
        # The compiled models go with their requests: released here, where the signal stack is kept.
        with _signal_stack_kept():
            self.request = self._batched = self._throughput = self.last_request = None

    def _throughput_queue(self):
        if self._throughput is None:
            compiled = self._compile(self._model, {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": self.streams})
            self._stream_output = compiled.outputs[-1]
            self._throughput = _openvino().AsyncInferQueue(compiled, self.streams)
        return self._throughput

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        batch = as_batch(images, self.input_size, f"{self.path}")
        if self.streams > 1 and len(batch) >= self.streams:
            return self._run_streams(batch)
        request = self.request if len(batch) == 1 or self.fixed_batch else self._batch_request()
        result = request.infer({0: batch})
        self.last_request = request  # for per-layer profiling (bench/infer.py --profile)
        # The final head is the last output (the dunet export convention); a copy: the request reuses its buffers.
        return np.array(result[request.model_outputs[-1]], dtype=np.float32)

    def _batch_request(self):
        if self._batched is None:
            self._batched = self._compile(self._model, {"PERFORMANCE_HINT": "LATENCY"}).create_infer_request()
        return self._batched

    def _run_streams(self, batch: np.ndarray) -> np.ndarray:
        queue = self._throughput_queue()
        parts = np.array_split(batch, self.streams)
        results: list[np.ndarray | None] = [None] * len(parts)

        def done(request, index):
            results[index] = np.array(request.get_tensor(self._stream_output).data, dtype=np.float32)

        queue.set_callback(done)
        for index, part in enumerate(parts):
            queue.start_async({0: np.ascontiguousarray(part)}, index)
        queue.wait_all()
        return np.concatenate(results)


def _final_output_only(model):
    """`model` with only its last output, the final head (the dunet export convention): OpenVINO then drops the
    intermediate heads, which inference never reads (the 300w-dunet2 int8 network at one image: 9.2 -> 8.7 ms)."""
    if len(model.outputs) == 1:
        return model
    return _openvino().Model([model.get_results()[-1]], model.get_parameters(), model.get_friendly_name())


def _with_batch(model, batch: int):
    """A copy of `model` whose input has `batch` as its first dimension, the others as they were."""
    copy = model.clone()
    shape = copy.inputs[0].get_partial_shape()
    copy.reshape({copy.inputs[0]: _openvino().PartialShape([batch, *list(shape)[1:]])})
    return copy


def _save_ir(model, metadata: dict[str, str], xml_path: Path) -> Path:
    """Write `model` as an OpenVINO IR (.xml and .bin) with the dunet metadata in its rt_info."""
    if xml_path.suffix != ".xml":
        raise DunetError(f"{xml_path}: an OpenVINO IR file name must end in .xml")
    for key, value in metadata.items():
        model.set_rt_info(value, [RT_INFO_KEY, key])
    xml_path.parent.mkdir(parents=True, exist_ok=True)
    try:
        _openvino().save_model(model, str(xml_path), compress_to_fp16=False)
    except RuntimeError as err:  # OpenVINO's writer reports a full disk, say, as a RuntimeError
        raise DunetError(f"{xml_path}: cannot write the OpenVINO model ({_reason(err)})") from None
    return xml_path


def save_openvino(onnx_path: str | Path, xml_path: str | Path) -> Path:
    """Convert an ONNX file from `export_onnx` to a float OpenVINO IR, metadata included."""
    onnx_path = Path(onnx_path)
    model = _read_model(onnx_path)
    return _save_ir(model, _metadata(onnx_path, model), Path(xml_path))


def head_convolutions(model) -> list[str]:
    """Friendly names of the heads: the convolutions whose output reaches a graph output (through a bias Add
    if any). They stay in float in an int8 file: the heatmaps' sub-pixel peaks need their full precision."""
    def producer(op):
        return op.input_value(0).get_node()

    names = []
    for result in model.get_results():
        op = producer(result)
        while op.get_type_name() in ("Add", "Convert"):
            op = producer(op)
        if op.get_type_name() == "Convolution":
            names.append(op.get_friendly_name())
    return names


def quantize_openvino_int8(fp32_path: str | Path, int8_path: str | Path, calibration, *,
                           keep_float: list[str] | None = None) -> Path:
    """Write an int8 OpenVINO IR (`int8_path`, .xml with its .bin) of the float ONNX file `fp32_path`,
    calibrated on `calibration`: image batches (B, 3, S, S) float32 in [0, 1] like the ones the model
    will see. `keep_float`: convolution names to leave in float, default the heads (`head_convolutions`)."""
    _openvino()
    try:
        import nncf
    except ImportError:
        raise DunetError("OpenVINO int8 needs the nncf package: pip install 'dunet[openvino]'") from None
    fp32_path, int8_path = Path(fp32_path), Path(int8_path)
    if int8_path.suffix != ".xml":
        raise DunetError(f"{int8_path}: an OpenVINO IR file name must end in .xml")
    nncf.set_log_level(logging.WARNING)  # its INFO lines list every layer left in float
    model = _read_model(fp32_path)
    samples = [sample[None] for batch in calibration_set(calibration) for sample in batch]
    keep = head_convolutions(model) if keep_float is None else list(keep_float)
    try:
        with _signal_stack_kept():  # NNCF compiles and releases models of its own
            quantized = nncf.quantize(
                model, nncf.Dataset(samples), subset_size=len(samples), preset=nncf.QuantizationPreset.PERFORMANCE,
                ignored_scope=nncf.IgnoredScope(names=keep), fast_bias_correction=True,
                # Pre-VNNI int8 kernels (AVX2) add u8 x s8 products in pairs into int16, which saturates on raw
                # pixels times full 8-bit weights (0.2 points of face NME lost on an AVX2 CPU): the stem, the first
                # layer, gets 7-bit weights (NNCF's overflow fix; no loss measured). Deeper layers, fed by BN-ReLU,
                # keep all 8 bits.
                advanced_parameters=nncf.AdvancedQuantizationParameters(overflow_fix=nncf.OverflowFix.FIRST_LAYER))
            gc.collect()  # NNCF's compiled models go here, inside the guard
    except Exception as err:
        raise DunetError(f"int8 quantization of {fp32_path} failed: {type(err).__name__}: {err}") from err
    return _save_ir(quantized, {**_metadata(fp32_path, model), "precision": "int8-openvino"}, int8_path)
