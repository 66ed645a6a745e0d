"""Quantization of weights, inputs and gradients (paper 3.5). See `spec.py` for the spec syntax
and docs/quantization.md for what each scheme does. Names load on first use (`dunet.lazy`): the layers
need PyTorch, the spec does not."""

from dunet.lazy import lazy_exports

_EXPORTS = {
    "QConv2d": "dunet.quant.layers", "bn_relu_conv": "dunet.quant.layers", "conv2d": "dunet.quant.layers",
    "folded_batch_norm": "dunet.quant.layers", "saves_codes": "dunet.quant.layers",
    "unit_activation": "dunet.quant.layers",
    "QUANT_CHOICES": "dunet.quant.spec", "QuantSpec": "dunet.quant.spec", "parse_quant": "dunet.quant.spec",
}
__getattr__ = lazy_exports(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
