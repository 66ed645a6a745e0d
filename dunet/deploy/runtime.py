"""Predictors: one call from a batch of images to the final heatmaps, whatever runs the network.

    predictor = TorchPredictor(model, precision="bf16")     # or OnnxPredictor("model.onnx")
    heatmaps = predictor(images)   # (B, 3, S, S) float32 in [0, 1] -> (B, K, S/4, S/4) float32 numpy

What was measured on this machine (bench/infer.py, docs/research/deployment.md):
- torch runs channels_last (oneDNN's blocked NHWC convolutions; ~1.2x over NCHW in fp32). For bf16
  the whole model is cast (`model.to(bfloat16)`), which on this Xeon's AMX tiles was 1.2x faster than
  autocast: autocast keeps the memory-bound BN / ReLU / concat passes in fp32 and re-casts weights
  on every call. bf16 is the fastest path measured, 2.3-2.9x torch fp32.
- `compile=True` adds torch.compile (inductor, frozen weights), which fuses the BN-ReLU and concat
  passes between convolutions: 1.4x on DU-Net(8) bf16, but its first call per input shape compiles
  for many minutes (12 on this loaded machine), so it is off by default.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from torch import Tensor, nn

from dunet import DunetError

PRECISIONS = ("fp32", "bf16")


class Predictor(Protocol):
    input_size: int

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray: ...


def as_batch(images: np.ndarray | Tensor, input_size: int | None, where: str) -> np.ndarray:
    """(B, 3, S, S) float32 contiguous numpy, or a DunetError saying what is wrong."""
    if isinstance(images, Tensor):
        images = images.detach().cpu().float().numpy()
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[1] != 3:
        raise DunetError(f"{where}: expected images of shape (B, 3, S, S), got {tuple(images.shape)}")
    if input_size is not None and images.shape[2:] != (input_size, input_size):
        raise DunetError(f"{where}: the model takes {input_size}x{input_size} images, got "
                         f"{images.shape[2]}x{images.shape[3]}")
    if not np.issubdtype(images.dtype, np.floating):
        raise DunetError(f"{where}: expected float images in [0, 1], got dtype {images.dtype}")
    return np.ascontiguousarray(images, dtype=np.float32)


class TorchPredictor:
    """A PyTorch model (any dunet model) run for inference in fp32 or bfloat16 on the CPU.

    Works on its own copy of `model`, so the caller's model keeps its dtype and mode."""

    def __init__(self, model: nn.Module, precision: str = "fp32", *, compile: bool = False,
                 input_size: int | None = None):
        if precision not in PRECISIONS:
            raise DunetError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
        self.precision = precision
        self.dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        cfg = getattr(model, "cfg", None)
        self.input_size = input_size or getattr(cfg, "input_size", None)
        model = copy.deepcopy(model).eval().to(self.dtype).to(memory_format=torch.channels_last)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model = model
        self.forward = model
        if compile:
            # freezing: weights become constants, so inductor can pre-pack them for oneDNN and fold BN.
            self.forward = torch.compile(model, options={"freezing": True})

    @torch.inference_mode()
    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        batch = as_batch(images, self.input_size, "TorchPredictor")
        x = torch.from_numpy(batch).to(self.dtype).contiguous(memory_format=torch.channels_last)
        outputs = self.forward(x)
        return outputs[-1].float().contiguous().numpy()


class OnnxPredictor:
    """An exported ONNX file (float or int8) run by onnxruntime on the CPU."""

    backend, precision = "onnx", "fp32"  # float layers run in fp32

    def __init__(self, path: str | Path, threads: int = 2):
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise DunetError(f"{self.path}: no such ONNX file")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # warnings about unused initializers etc. are not the user's business
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types for bad files
            raise DunetError(f"{self.path}: onnxruntime cannot load it ({type(err).__name__}: {err})") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise DunetError(f"{self.path}: expected one image input (B, 3, S, S), found "
                             f"{[(i.name, i.shape) for i in inputs]}")
        self.input_name = inputs[0].name
        size = inputs[0].shape[2]
        self.input_size = size if isinstance(size, int) else None
        batch = inputs[0].shape[0]
        self.fixed_batch = batch if isinstance(batch, int) else None
        # The final head is the last output (the dunet export convention).
        self.output_name = self.session.get_outputs()[-1].name
        self.metadata = {key.removeprefix("dunet."): value
                         for key, value in self.session.get_modelmeta().custom_metadata_map.items()}

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray:
        batch = as_batch(images, self.input_size, f"{self.path}")
        step = self.fixed_batch
        if step is None or batch.shape[0] == step:
            return self._run(batch)
        # A fixed-batch file: run it in chunks of its batch size, the last one zero-padded.
        outputs = []
        for start in range(0, batch.shape[0], step):
            chunk = batch[start:start + step]
            count = chunk.shape[0]
            if count < step:
                chunk = np.concatenate([chunk, np.zeros((step - count, *chunk.shape[1:]), np.float32)])
            outputs.append(self._run(chunk)[:count])
        return np.concatenate(outputs)

    def _run(self, batch: np.ndarray) -> np.ndarray:
        return self.session.run([self.output_name], {self.input_name: batch})[0]
