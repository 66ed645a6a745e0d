"""Peak training memory of one model configuration, measured in this fresh process.

Run by bench/memory.py, one process per configuration so that nothing from an earlier
configuration (allocator caches, faulted-in pages) pollutes the figure:

    python bench/_memory_worker.py '{"model": {"units": 4, "memory_efficient": true, ...}, "batch": 8}'

Prints one JSON object on the last line of stdout; on a bad configuration it prints
{"error": "..."} and exits with status 2.

What is measured (all bytes):
- step_peak: peak RSS during one training step (forward, MSE over all heads, backward, RMSprop
  step) minus the RSS just before it. A warm-up step runs first, so code pages are faulted in and
  the optimizer state exists; the measured step starts with grads set to None, so this is
  activations + grads + transient buffers. The peak is the kernel's high-water mark (VmHWM, reset
  through /proc/self/clear_refs), with a 1 ms RSS sampler as fallback and cross-check.
- train: step_peak + parameters + optimizer state + the batch, i.e. what training this model at
  this batch needs, without the Python/torch runtime itself (the analogue of the paper's GPU memory).
- saved: bytes of the unique storages autograd keeps for backward (allocator independent; inputs
  of checkpointed segments included, parameters and the batch excluded), split by module and by the
  op that produced each tensor in `saved_by_module` / `saved_by_producer`.
"""

from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
from collections import defaultdict
from typing import TYPE_CHECKING

from dunet import DunetError

if TYPE_CHECKING:  # torch and the models are imported where they are used
    from torch import nn

    from dunet.models import ModelConfig

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def current_rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE_SIZE


def reset_peak_rss() -> bool:
    """Reset the kernel's RSS high-water mark to the current RSS (Linux >= 4.0)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def kernel_peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")


class RssSampler:
    """Samples RSS every `interval` seconds in a thread and keeps the maximum. Torch releases the
    GIL inside its kernels, so the sampler runs during the long ops where the peak lives."""

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, current_rss())
            time.sleep(self.interval)

    def __enter__(self) -> "RssSampler":
        self.peak = current_rss()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())


class SavedTensorCounter:
    """Counts the unique storages autograd saves for backward during the forward passes run
    inside `with counter:`, attributed to the innermost module running and to the op that
    produced the tensor. Memory-efficient segments save nothing visible here (checkpoint packs
    its own), but keep their inputs for the recomputation: those are counted through a pre-hook."""

    def __init__(self, model: "nn.Module", exclude: list):
        import torch
        from dunet.models.blocks import ConcatBnReluConv

        self._torch = torch
        self.seen: set[int] = {t.untyped_storage().data_ptr() for t in exclude}
        self.by_module: dict[str, int] = defaultdict(int)
        self.by_producer: dict[str, int] = defaultdict(int)
        self._stack: list[str] = []
        self._handles = []
        self._hooks = None
        for name, module in model.named_modules():
            # Indices dropped so that e.g. all U-Nets' squeeze segments share one key.
            key = re.sub(r"\.?\d+\.?", ".", name).strip(".") or type(module).__name__
            self._handles.append(module.register_forward_pre_hook(self._enter(key, module, ConcatBnReluConv)))
            self._handles.append(module.register_forward_hook(self._leave))

    def _enter(self, key: str, module, concat_type):
        def hook(_module, args):
            self._stack.append(key)
            if isinstance(module, concat_type) and module.memory_efficient and module.training:
                for tensor in args[0]:
                    self._count(tensor, "(kept for recompute)")

        return hook

    def _leave(self, _module, _args, _output) -> None:
        self._stack.pop()

    def _count(self, tensor, producer: str | None = None) -> None:
        if not isinstance(tensor, self._torch.Tensor) or tensor.layout != self._torch.strided:
            return
        storage = tensor.untyped_storage()
        ptr = storage.data_ptr()
        if ptr == 0 or ptr in self.seen:
            return
        self.seen.add(ptr)
        if producer is None:
            producer = type(tensor.grad_fn).__name__ if tensor.grad_fn is not None else "(leaf)"
        self.by_module[self._stack[-1] if self._stack else "(top level)"] += storage.nbytes()
        self.by_producer[producer] += storage.nbytes()

    def _pack(self, tensor):
        self._count(tensor)
        return tensor

    @property
    def total(self) -> int:
        return sum(self.by_module.values())

    def __enter__(self) -> "SavedTensorCounter":
        self._hooks = self._torch.autograd.graph.saved_tensors_hooks(self._pack, lambda t: t)
        self._hooks.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self._hooks.__exit__(*exc)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def build(spec: dict) -> tuple["ModelConfig", "nn.Module"]:
    """The model the spec describes; errors here are the user's (bad config, unsupported quant)."""
    from dunet.models import ModelConfig, build_model

    cfg = ModelConfig(arch="dunet", **spec["model"])
    return cfg, build_model(cfg).train()


def training_step(cfg: "ModelConfig", model: "nn.Module", batch: int, device: str = "cpu"):
    """(optimizer, images, targets, step): one RMSprop step on random data, MSE over every head."""
    import torch
    import torch.nn.functional as F

    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-4)
    images = torch.rand(batch, cfg.in_channels, cfg.input_size, cfg.input_size, device=device)
    targets = torch.rand(batch, cfg.landmarks, cfg.heatmap_size, cfg.heatmap_size, device=device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        heatmaps = model(images)
        loss = sum(F.mse_loss(h, targets) for h in heatmaps)
        loss.backward()
        optimizer.step()

    return optimizer, images, targets, step


def measure(spec: dict, cfg: "ModelConfig", model: "nn.Module") -> dict:
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    device = torch.device(spec.get("device", "cpu"))
    if device.type == "cuda":
        return measure_cuda(spec, cfg, model.to(device), device)
    batch = int(spec["batch"])
    optimizer, images, targets, train_step = training_step(cfg, model, batch)

    params = list(model.parameters())
    counter = SavedTensorCounter(model, exclude=params + [images, targets])
    start = time.perf_counter()
    with counter:  # the warm-up step also counts the saved tensors (hooks cost a little time)
        train_step()
    warmup_seconds = time.perf_counter() - start
    counter.remove()
    optimizer.zero_grad(set_to_none=True)

    baseline = current_rss()
    hwm_ok = reset_peak_rss()
    start = time.perf_counter()
    with RssSampler() as sampler:
        train_step()
    step_seconds = time.perf_counter() - start
    peak = kernel_peak_rss() if hwm_ok else sampler.peak

    param_bytes = sum(p.numel() * p.element_size() for p in params)
    state_bytes = sum(
        t.numel() * t.element_size()
        for state in optimizer.state.values() for t in state.values() if isinstance(t, torch.Tensor)
    )
    data_bytes = images.numel() * images.element_size() + targets.numel() * targets.element_size()
    step_peak = peak - baseline
    return {
        "params": sum(p.numel() for p in params),
        "param_bytes": param_bytes,
        "optimizer_state_bytes": state_bytes,
        "data_bytes": data_bytes,
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_source": "VmHWM" if hwm_ok else "sampler",
        "sampled_peak_rss": sampler.peak,
        "step_peak_bytes": step_peak,
        "train_bytes": step_peak + param_bytes + state_bytes + data_bytes,
        "saved_bytes": counter.total,
        "saved_by_module": dict(sorted(counter.by_module.items(), key=lambda kv: -kv[1])),
        "saved_by_producer": dict(sorted(counter.by_producer.items(), key=lambda kv: -kv[1])),
        "warmup_seconds": warmup_seconds,
        "step_seconds": step_seconds,
        "threads": torch.get_num_threads(),
    }


def measure_cuda(spec: dict, cfg: "ModelConfig", model: "nn.Module", device) -> dict:
    """GPU memory of a training step, as the paper's Fig. 5 counts it: the allocator's peak
    (torch.cuda.max_memory_allocated) over a step after a warm-up step, weights, optimizer state and batch included."""
    import torch

    batch = int(spec["batch"])
    optimizer, images, targets, train_step = training_step(cfg, model, batch, device)

    start = time.perf_counter()
    train_step()
    torch.cuda.synchronize(device)
    warmup_seconds = time.perf_counter() - start
    optimizer.zero_grad(set_to_none=True)
    baseline = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    start = time.perf_counter()
    train_step()
    torch.cuda.synchronize(device)
    step_seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated(device)
    params = list(model.parameters())
    return {
        "device": torch.cuda.get_device_name(device),
        "params": sum(p.numel() for p in params),
        "param_bytes": sum(p.numel() * p.element_size() for p in params),
        "baseline_rss": baseline,
        "peak_rss": peak,
        "peak_source": "torch.cuda.max_memory_allocated",
        "step_peak_bytes": peak - baseline,
        "train_bytes": peak,
        "saved_bytes": 0,
        "warmup_seconds": warmup_seconds,
        "step_seconds": step_seconds,
        "threads": torch.get_num_threads(),
    }


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(json.dumps({"error": "usage: _memory_worker.py '<json spec>'"}))
        return 2
    spec = json.loads(argv[1])
    try:
        cfg, model = build(spec)
    except (DunetError, ValueError, TypeError, NotImplementedError) as err:
        print(json.dumps({"error": f"{type(err).__name__}: {err}"}))
        return 2
    print(json.dumps(measure(spec, cfg, model)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
