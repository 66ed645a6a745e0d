"""Quantization of weights, inputs and gradients (paper 3.5). See `spec.py` for the spec syntax."""

from dunet.quant.layers import conv2d

__all__ = ["conv2d"]
