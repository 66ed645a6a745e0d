"""The convolution every quantizable layer of every model is built with."""

from __future__ import annotations

from torch import nn


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int | None = None,
           bias: bool = False, quant: str = "none") -> nn.Module:
    """A convolution, quantized as `quant` says. First and last layers of a model call nn.Conv2d directly."""
    if padding is None:
        padding = kernel_size // 2
    if quant != "none":
        raise NotImplementedError(f"quantization {quant!r} is not built yet")
    return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
