"""OpenVINO: the fastest CPU runtime measured here (bench/infer.py, docs/research/deployment.md), and the one
`pip install dunet` brings. No PyTorch: it runs an OpenVINO IR (.xml), an ONNX file, or a network built from a
model file's weights (`dunet.runtime.graph`).

    network = OpenVinoPredictor("model-int8.xml", precision="bf16", threads=2)
    heatmaps = network(images)   # (B, 3, S, S) float32 in [0, 1] -> (B, K, S/4, S/4) float32

OpenVINO fuses each BN-ReLU into one pass and runs convolutions on AMX tiles where the CPU has them, in bfloat16
for a float model (where the CPU computes bf16 natively) and in int8 for an int8 IR (`dunet export --int8`).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import os
import platform
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.files import cache_dir
from dunet.runtime import backends, cpu
from dunet.runtime.backends import as_batch

HINTS = {"fp32": "f32", "bf16": "bf16"}  # dunet precision -> OpenVINO INFERENCE_PRECISION_HINT
SUFFIXES = (".onnx", ".xml")
DETECTOR_SUFFIXES = (".tflite", ".onnx")  # the shipped detectors' files, both of which OpenVINO reads
RT_INFO_KEY = "dunet"
ONNX_PREFIX = "dunet."  # the metadata keys of an ONNX file dunet wrote (dunet.deploy.onnx_export)


def _openvino():
    return backends.require("openvino")


@functools.cache
def core():
    """One OpenVINO Core per process, so one CPU plugin: each Core made its own plugin instance (see below). It
    keeps compiled networks in the cache folder (dunet.files.cache_dir): a model compiled once loads in a fraction
    of the time after (300w-dunet2-w80's int8 file, 2 threads: 0.88 -> 0.52 s on an Intel Xeon with AMX). Without a
    writable cache folder it compiles every time."""
    ov_core = _openvino().Core()
    folder = cache_dir() / "openvino"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if os.access(folder, os.W_OK):
            ov_core.set_property({"CACHE_DIR": str(folder)})
    except OSError:
        pass
    return ov_core


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


def _read_model(path: Path, suffixes: tuple[str, ...] = SUFFIXES):
    if path.suffix not in suffixes:
        raise DunetError(f"{path}: OpenVINO reads an ONNX file (.onnx) or an OpenVINO IR (.xml)")
    if not path.is_file():
        raise DunetError(f"{path}: no such file")
    try:
        return core().read_model(str(path))
    except DunetError:
        raise
    except Exception as err:  # OpenVINO raises RuntimeError with its own message for bad files
        raise DunetError(f"{path}: OpenVINO cannot read it ({_reason(err)})") from None


def _check_finite_weights(model, path: Path) -> None:
    """A DunetError naming the first float constant holding NaN or infinity: OpenVINO's CPU plugin computes finite
    heatmaps from such weights (an all-NaN first convolution, measured), so the check on the heatmaps misses them."""
    for op in model.get_ordered_ops():
        if op.get_type_name() == "Constant" and op.get_element_type().is_real():
            if not np.isfinite(op.get_data()).all():
                raise DunetError(f"{path}: damaged weights: {op.get_friendly_name()} holds NaN or infinite values; "
                                 "export the model again")


def _reason(err: Exception) -> str:
    """The line of an OpenVINO error that says what is wrong: its messages start with the C++ source line."""
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return next((line for line in lines if not line.startswith("Exception from ")), type(err).__name__)


def model_metadata(path: Path, model) -> dict[str, str]:
    """The `dunet.*` metadata: an ONNX file's metadata_props (OpenVINO keeps them under "framework"), or the
    IR's rt_info written by `dunet.deploy.openvino`."""
    rt_info = model.get_rt_info()
    if path.suffix == ".onnx":
        props = rt_info["framework"] if "framework" in rt_info else {}
        return {key.removeprefix(ONNX_PREFIX): value.astype(str) for key, value in props.items()
                if key.startswith(ONNX_PREFIX)}
    if RT_INFO_KEY not in rt_info:
        return {}
    return {key: value.astype(str) for key, value in rt_info[RT_INFO_KEY].items()}


class OpenVinoPredictor:
    """An exported ONNX file, an OpenVINO IR, or a network built from a model file, run by OpenVINO on the CPU.

    `precision` is the precision of the float layers: all of them for a float model, the first and last
    layers of an int8 IR. `streams`: a batch of at least that many images is split into `streams` parts
    run at once, each on threads / streams threads (OpenVINO's throughput mode: about 8 % more images/s
    for DU-Net(8) at batch 8 on 2 cores, bench/infer.py); smaller batches and fixed-batch files run as
    one request on all threads (latency mode); the throughput mode is compiled on first use. `properties`: more
    OpenVINO CPU properties, e.g. {"PERF_COUNT": True}. Not for concurrent calls from several threads."""

    backend = "openvino"

    def __init__(self, path: str | Path, precision: str = "bf16", threads: int = 2, streams: int = 1,
                 properties: dict | None = None, *, network=None, metadata: dict[str, str] | None = None):
        if precision not in HINTS:
            raise DunetError(f"precision {precision!r}: choose one of {', '.join(HINTS)}")
        if streams < 1:
            raise DunetError(f"streams must be at least 1, got {streams}")
        # OpenVINO computes bf16 only on a CPU that has it and runs fp32 elsewhere; under a oneDNN ISA cap its bf16
        # hint finds no kernels at all. So ask for what will run, and say so.
        self.path, self.precision = Path(path), precision if precision == "fp32" or cpu.native_bf16()[0] else "fp32"
        # `network`: an openvino.Model built from the weights in `path` (dunet.runtime.graph), with its metadata.
        model = _read_model(self.path) if network is None else network
        if network is None:
            _check_finite_weights(model, self.path)
        self.metadata = model_metadata(self.path, model) if network is None else dict(metadata or {})
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
        return _compile(model, {**self._config, **config}, self.path)

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

    def __call__(self, images: np.ndarray) -> np.ndarray:
        batch = as_batch(images, self.input_size, f"{self.path}")
        if self.streams > 1 and len(batch) >= self.streams:
            return self._run_streams(batch)
        request = self.request if len(batch) == 1 or self.fixed_batch else self._batch_request()
        # The batch as the request's input, without a copy, and no dictionary of results: together ~0.07 ms of a
        # face's ~3 ms (infer({0: batch}) copies the input and wraps every output).
        request.set_input_tensor(_openvino().Tensor(batch, shared_memory=True))
        request.infer()
        self.last_request = request  # for per-layer profiling (bench/infer.py --profile)
        # The final head is the last output (the dunet export convention); a copy: the request reuses its buffers.
        return np.array(request.get_tensor(request.model_outputs[-1]).data, dtype=np.float32)

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


class DetectorNetwork:
    """A detector's network (BlazeFace's TFLite file, BlazePose's person detector as ONNX), run by OpenVINO on the
    CPU in float32: its outputs are box offsets in input pixels and logits, which bfloat16 moves by whole pixels
    (up to 28 px on the person detector's 224 px input, measured). `__call__` takes the input array and gives
    every output by name. 4-6x faster than OpenCV's cv2.dnn on the same files, one thread (BlazePose's
    detector: 12 against 52-76 ms on an Intel Xeon with AMX). Made once per process and kept to its end
    (dunet.runtime.detect), so never released while signals still matter (see _signal_stack_kept)."""

    def __init__(self, path: Path, threads: int):
        if not path.is_file():
            raise DunetError(f"{path}: the detector model is missing from the installation")
        model = _read_model(path, DETECTOR_SUFFIXES)
        config = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"}
        compiled = _compile(model, config, path)
        self.names = [output.get_any_name() for output in compiled.outputs]
        self.request = compiled.create_infer_request()

    def __call__(self, blob: np.ndarray) -> dict[str, np.ndarray]:
        # Named, so that a contiguous copy lives until the request has read it: the tensor shares its memory.
        blob = np.ascontiguousarray(blob, np.float32)
        self.request.set_input_tensor(_openvino().Tensor(blob, shared_memory=True))
        self.request.infer()
        return {name: np.array(self.request.get_output_tensor(i).data) for i, name in enumerate(self.names)}


def _compile(model, config: dict, path: Path):
    """`model` compiled for the CPU, the calling thread's signal stack kept; a file OpenVINO cannot run fails here."""
    try:
        with _signal_stack_kept():
            return core().compile_model(model, "CPU", config)
    except Exception as err:
        raise DunetError(f"{path}: OpenVINO cannot compile it ({type(err).__name__}: {err})") from None


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


