"""Measured efficiency of a quantized model: training memory, model size, and the balance index.

Balance index (paper eq. 7): BI = NME^2 * TM * MS, with NME in percent, TM the training-memory ratio
and MS the model-size ratio of the quantized model to the same model in full precision. Smaller is
better. Both ratios are measured here, not derived from bit-widths:
- TM: bytes autograd keeps for backward during one training step (unique storages, parameters and
  the batch excluded), quantized over full precision, same architecture, batch and input size, both
  without memory_efficient (the tensors a checkpoint keeps for recomputation are invisible to
  saved-tensor hooks). This is the part of training memory that k-bit inputs shrink; it is allocator
  independent. bench/memory.py measures peak RSS as well.
- MS: bytes of the packed file (dunet.quant.packing) over bytes of the fp32 safetensors weights.
"""

from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dunet.models import build_model
from dunet.models.config import ModelConfig
from dunet.models.profile import fp32_bytes
from dunet.quant.packing import packed_size_bytes


def balance_index(nme: float, train_memory_ratio: float, model_size_ratio: float) -> float:
    """Eq. (7). `nme` in percent, as the paper's Table 5 (DU-Net(4): 3.38^2 * 1 * 1 = 11.4)."""
    return nme**2 * train_memory_ratio * model_size_ratio


def saved_tensor_bytes(model: nn.Module, images: Tensor, targets: Tensor) -> dict:
    """Run one training step (forward, MSE summed over the heads, backward) and count the bytes of
    the unique storages autograd saved for backward, in total and per dtype. Parameters and the
    batch are not counted (they exist anyway). A training step: BN running statistics move, so
    measure a throwaway model."""
    seen = {t.untyped_storage().data_ptr() for t in [*model.parameters(), *model.buffers(), images, targets]}
    by_dtype: dict[str, int] = defaultdict(int)

    def pack(t: Tensor) -> Tensor:
        if t.layout == torch.strided:
            storage = t.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                by_dtype[str(t.dtype).removeprefix("torch.")] += storage.nbytes()
        return t

    was_training = model.training
    model.train()
    try:
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            heatmaps = model(images)
            loss = sum(F.mse_loss(h, targets) for h in heatmaps)
        loss.backward()
    finally:
        model.train(was_training)
        model.zero_grad(set_to_none=True)
    return {"total": sum(by_dtype.values()), "by_dtype": dict(by_dtype)}


def _random_batch(cfg: ModelConfig, batch: int, seed: int) -> tuple[Tensor, Tensor]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(batch, cfg.in_channels, cfg.input_size, cfg.input_size, generator=generator)
    targets = torch.rand(batch, cfg.landmarks, cfg.heatmap_size, cfg.heatmap_size, generator=generator)
    return images, targets


def training_memory_ratio(cfg: ModelConfig, batch: int = 2, seed: int = 0) -> float:
    """Saved-for-backward bytes of one training step of `cfg` over those of cfg with quant none, both
    without memory_efficient. Both models see the same random batch. Costs two training steps at cfg's
    input size."""
    cfg = cfg.replace(memory_efficient=False)
    images, targets = _random_batch(cfg, batch, seed)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        quantized = saved_tensor_bytes(build_model(cfg), images, targets)["total"]
        torch.manual_seed(seed)
        full = saved_tensor_bytes(build_model(cfg.replace(quant="none")), images, targets)["total"]
    return quantized / full


def model_size_ratio(model: nn.Module) -> float:
    """Packed file bytes over fp32 safetensors bytes of the same weights."""
    return packed_size_bytes(model) / fp32_bytes(model)


def balance_report(model: nn.Module, cfg: ModelConfig, nme: float, batch: int = 2) -> dict:
    """What eval prints for a quantized run: both measured ratios and the balance index."""
    tm = training_memory_ratio(cfg, batch=batch)
    ms = model_size_ratio(model)
    return {"nme": nme, "train_memory_ratio": tm, "model_size_ratio": ms, "balance_index": balance_index(nme, tm, ms)}
