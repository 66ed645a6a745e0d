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
from dunet.runtime.backends import as_batch
from dunet.runtime.onnxruntime import OnnxPredictor  # noqa: F401 (the onnxruntime runner, for the exporters' callers)

PRECISIONS = ("fp32", "bf16")


class Predictor(Protocol):
    input_size: int

    def __call__(self, images: np.ndarray | Tensor) -> np.ndarray: ...


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
