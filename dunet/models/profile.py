"""Size and cost of a model: parameters, multiply-accumulates, bytes on disk."""

from __future__ import annotations

import torch
from safetensors.torch import save as safetensors_bytes
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from dunet.models.config import ModelConfig


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_conv_params(model: nn.Module) -> int:
    return sum(p.numel() for m in model.modules() if isinstance(m, nn.Conv2d) for p in m.parameters(recurse=False))


def count_macs(cfg: ModelConfig, batch: int = 1) -> int:
    """Multiply-accumulates of one forward pass per image, counted on the meta device (no compute)."""
    from dunet.models import build_model  # avoid an import cycle

    with torch.device("meta"):
        model = build_model(cfg.replace(quant="none")).eval()
        images = torch.empty(batch, cfg.in_channels, cfg.input_size, cfg.input_size)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(images)
    return counter.get_total_flops() // 2 // batch  # the counter reports 2 FLOPs per multiply-accumulate


def fp32_bytes(model: nn.Module) -> int:
    """Size of the saved fp32 weights (safetensors, with BN running statistics)."""
    state = {k: v.detach().float().contiguous() if v.is_floating_point() else v for k, v in model.state_dict().items()}
    return len(safetensors_bytes(state))


def profile(cfg: ModelConfig) -> dict:
    from dunet.models import build_model

    model = build_model(cfg)
    info = {
        "arch": cfg.arch,
        "block": cfg.block,
        "units": cfg.units,
        "order": cfg.order,
        "landmarks": cfg.landmarks,
        "input_size": cfg.input_size,
        "quant": cfg.quant,
        "params": count_params(model),
        "conv_params": count_conv_params(model),
        "macs": count_macs(cfg),
        "fp32_bytes": fp32_bytes(model),
    }
    if cfg.quant != "none":
        from dunet.quant.packing import packed_size_bytes

        info["packed_bytes"] = packed_size_bytes(model)
    return info
