"""Supervision at every head: regression (Gaussian-heatmap MSE) or detection (sigmoid cross-entropy on disks).

Both are masked by visibility: an unlabelled landmark contributes nothing. Per head, the loss is the
mean over labelled heatmap pixels; heads are summed (intermediate supervision, paper 3.2).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from dunet.data.heatmaps import DISK_LEVEL


def head_loss(pred: Tensor, target: Tensor, visible: Tensor, kind: str) -> Tensor:
    pred = pred.float()
    mask = visible[:, :, None, None].to(pred.dtype)
    if kind == "regression":
        per_pixel = (pred - target) ** 2
    elif kind == "detection":
        disk = (target >= DISK_LEVEL).to(pred.dtype)
        per_pixel = F.binary_cross_entropy_with_logits(pred, disk, reduction="none")
    else:
        raise ValueError(f"unknown supervision {kind!r}")
    pixels = pred.shape[-1] * pred.shape[-2]
    return (per_pixel * mask).sum() / (mask.sum() * pixels).clamp_min(1.0)


def total_loss(outputs: tuple[Tensor, ...], target: Tensor, visible: Tensor, kinds: list[str]) -> Tensor:
    if len(kinds) != len(outputs):
        raise ValueError(f"{len(outputs)} heads but {len(kinds)} supervision kinds")
    return sum(head_loss(o, target, visible, k) for o, k in zip(outputs, kinds))
