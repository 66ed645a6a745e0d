"""A PyTorch network from its ModelConfig."""

from __future__ import annotations

from torch import nn

from dunet.models.config import ModelConfig
from dunet.models.dunet import DUNet
from dunet.models.hourglass import StackedHourglass
from dunet.quant.spec import parse_quant

ARCHITECTURES = {"dunet": DUNet, "hourglass": StackedHourglass}


def build_model(cfg: ModelConfig) -> nn.Module:
    # The quantization spec is parsed here, once per model, and every quantized convolution shares it.
    return ARCHITECTURES[cfg.arch](cfg, parse_quant(cfg.quant))
