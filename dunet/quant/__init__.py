"""Quantization of weights, inputs and gradients (paper 3.5). See `spec.py` for the spec syntax
and docs/quantization.md for what each scheme does."""

from dunet.quant.layers import QConv2d, bn_relu_conv, conv2d, folded_batch_norm, saves_codes, unit_activation
from dunet.quant.spec import QUANT_CHOICES, QuantSpec, parse_quant

__all__ = [
    "QUANT_CHOICES",
    "QConv2d",
    "QuantSpec",
    "bn_relu_conv",
    "conv2d",
    "folded_batch_norm",
    "parse_quant",
    "saves_codes",
    "unit_activation",
]
