"""Model family: DU-Net and its baselines, built from a ModelConfig."""

from __future__ import annotations

from torch import nn

from dunet.models.config import ModelConfig, loss_anchors
from dunet.models.dunet import DUNet
from dunet.models.hourglass import StackedHourglass

ARCHITECTURES = {"dunet": DUNet, "hourglass": StackedHourglass}


def build_model(cfg: ModelConfig) -> nn.Module:
    return ARCHITECTURES[cfg.arch](cfg)


__all__ = ["ModelConfig", "DUNet", "StackedHourglass", "build_model", "loss_anchors"]
