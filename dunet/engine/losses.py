"""Supervision at every head: regression (Gaussian heatmaps, by MSE or the adaptive wing loss) or detection
(sigmoid cross-entropy on disks).

All are masked by visibility: an unlabelled landmark contributes nothing. Per head, the loss is the
mean over labelled heatmap pixels; heads are summed (intermediate supervision, paper 3.2).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from dunet.data.heatmaps import DISK_LEVEL

# Adaptive wing loss (Wang, Bo & Fuxin, ICCV 2019), the paper's constants. Near the target it is a log curve
# whose exponent alpha - y adapts to the target value y: steep around foreground pixels (y near 1), close to
# MSE on the background (y near 0), so small errors at the peak, which move the decoded point, weigh more.
# Beyond theta it is linear. Pixels in the dilated foreground (y > 0.2, 3x3) weigh 1 + weight.
AWING_OMEGA, AWING_THETA, AWING_EPSILON, AWING_ALPHA = 14.0, 0.5, 1.0, 2.1
AWING_FOREGROUND, AWING_WEIGHT = 0.2, 10.0


def adaptive_wing(pred: Tensor, target: Tensor) -> Tensor:
    """Per-pixel adaptive wing loss, continuous and smooth at |pred - target| = theta."""
    diff = (pred - target).abs()
    power = AWING_ALPHA - target
    ratio = AWING_THETA / AWING_EPSILON
    slope = AWING_OMEGA * power * ratio ** (power - 1) / (AWING_EPSILON * (1 + ratio**power))
    offset = AWING_THETA * slope - AWING_OMEGA * torch.log1p(ratio**power)
    near = AWING_OMEGA * torch.log1p((diff / AWING_EPSILON) ** power)
    return torch.where(diff < AWING_THETA, near, slope * diff - offset)


def awing_weights(target: Tensor) -> Tensor:
    foreground = F.max_pool2d((target > AWING_FOREGROUND).to(target.dtype), 3, stride=1, padding=1)
    return 1 + AWING_WEIGHT * foreground


def head_loss(pred: Tensor, target: Tensor, visible: Tensor, kind: str, regression_loss: str = "mse") -> Tensor:
    pred = pred.float()
    mask = visible[:, :, None, None].to(pred.dtype)
    if kind == "regression" and regression_loss == "awing":
        per_pixel = adaptive_wing(pred, target) * awing_weights(target)
    elif kind == "regression" and regression_loss == "mse":
        per_pixel = (pred - target) ** 2
    elif kind == "detection":
        disk = (target >= DISK_LEVEL).to(pred.dtype)
        per_pixel = F.binary_cross_entropy_with_logits(pred, disk, reduction="none")
    else:
        raise ValueError(f"unknown supervision {kind!r}")
    pixels = pred.shape[-1] * pred.shape[-2]
    return (per_pixel * mask).sum() / (mask.sum() * pixels).clamp_min(1.0)


def total_loss(outputs: tuple[Tensor, ...], target: Tensor, visible: Tensor, kinds: list[str],
               regression_loss: str = "mse") -> Tensor:
    if len(kinds) != len(outputs):
        raise ValueError(f"{len(outputs)} heads but {len(kinds)} supervision kinds")
    return sum(head_loss(o, target, visible, k, regression_loss) for o, k in zip(outputs, kinds))
