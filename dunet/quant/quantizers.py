"""Quantizers of paper section 3.5: weights to 1 or 2 bits, inputs and gradients to k bits.

Weights (latent weights stay float and receive the updates):
- binary  q(w) = sign(clip(w, -1, 1)), with sign(0) = +1 so that every weight is one bit;
- ternary q(w) = +1 where w > delta, -1 where w < -delta, else 0; delta = 0.7 mean|W| per output filter;
- alpha (XNOR-Net / TWN): times a float per output filter, mean|W| (binary) or the mean |w| over the
  weights above the threshold (ternary). Alpha is differentiable, so its gradient reaches the latents.
The straight-through estimator passes the gradient where |w| <= 1 and zeroes it where |w| > 1.

Inputs and gradients: the linear mapping of eq. (6), q(x, k) = clip(sigma round(x / sigma), -1 + sigma,
1 - sigma), sigma(k) = 2^(1-k), applied to x / scale. Eq. (6) covers [-1, 1], activations and errors do
not, so each tensor brings its own scale, scale = max|x| / (1 - sigma), which puts the largest value on the
top level 2^(k-1) - 1 of the grid: nothing is clipped, and small values are resolved relative to the
largest one instead of all rounding to zero (WAGE's per-layer scale for errors). The quantized value is
an integer code in [-(2^(k-1) - 1), 2^(k-1) - 1] (int8 for k <= 8) times step = scale * sigma.

Binary inputs (I = 1, XNOR-Net, Bulat & Tzimiropoulos): sign(x) in {-1, +1}, sign(0) = +1, with the
straight-through estimator of hardtanh: the gradient passes where |x| < 1 and is zeroed where |x| >= 1.
"""

from __future__ import annotations

import torch
from torch import Tensor

from dunet.quant.spec import QuantSpec

TERNARY_THRESHOLD = 0.7  # delta = 0.7 mean|W| (Li & Liu, ternary weight networks)


def sigma(k: int) -> float:
    """Unit distance of the k-bit grid, eq. (6)."""
    return 2.0 ** (1 - k)


def max_code(k: int) -> int:
    """The largest integer code of the k-bit grid: (1 - sigma(k)) / sigma(k)."""
    return 2 ** (k - 1) - 1


def quantize_linear(x: Tensor, k: int) -> Tensor:
    """Eq. (6) verbatim, for values in [-1, 1]: clip(sigma round(x / sigma), -1 + sigma, 1 - sigma)."""
    s = sigma(k)
    return torch.clamp(s * torch.round(x / s), -1 + s, 1 - s)


# ---------------------------------------------------------------------------------------------
# inputs and gradients: scaled eq. (6) as integer codes


def quantization_step(x: Tensor, k: int, dims: tuple[int, ...] | None = None) -> Tensor:
    """step = scale * sigma(k) = max|x| / (2^(k-1) - 1) over `dims` (kept as size-1 dims; None = the
    whole tensor), so that the largest value lands on the top code. At least float32 (under bf16
    autocast the step stays exact)."""
    x = x.detach()
    if dims is None:
        peak = torch.maximum(x.max(), x.min().neg())
    else:  # two reductions cost less than materialising |x|
        peak = torch.maximum(x.amax(dim=dims, keepdim=True), x.amin(dim=dims, keepdim=True).neg_())
    peak = peak.to(torch.promote_types(peak.dtype, torch.float32))
    # An all-zero slice gets the smallest positive step: its codes are 0 all the same.
    return (peak / max_code(k)).clamp_(min=torch.finfo(peak.dtype).tiny)


def quantize_codes(x: Tensor, k: int, dims: tuple[int, ...] | None = None) -> tuple[Tensor, Tensor]:
    """k-bit integer codes of `x` and the step they count in, x ~ codes * step.

    Equal to scale * quantize_linear(x / scale, k) with scale = max|x| / (1 - sigma(k)) over `dims`.
    No clip is needed: with the step from max|x|, |x| / step <= 2^(k-1) - 1 up to float rounding
    far below one half, so round() never leaves the grid."""
    step = quantization_step(x, k, dims)
    return torch.div(x.detach(), step).round_().to(torch.int8), step


def dequantize(codes: Tensor, step: Tensor) -> Tensor:
    return torch.mul(codes, step)  # int8 * float32 -> float32 in one pass


def sample_dims(x: Tensor) -> tuple[int, ...]:
    """Every dim but the batch: one scale per sample, so a sample's result never depends on its batch."""
    return tuple(range(1, x.dim()))


def quantize_input(x: Tensor, k: int) -> tuple[Tensor, Tensor]:
    """Codes and per-sample step of a convolution input."""
    return quantize_codes(x, k, sample_dims(x))


def sign(x: Tensor) -> Tensor:
    """sign(x) in {-1, +1}, with sign(0) = +1 so that every value is one bit (binary weights and inputs)."""
    return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)


def sign_ste_mask(x: Tensor) -> Tensor:
    """Where the gradient of binary inputs sign(x) passes: |x| < 1 (the derivative of hardtanh)."""
    return x.abs() < 1


def quantize_error(g: Tensor, k: int | None) -> Tensor:
    """A gradient (error signal or weight gradient) on the k-bit grid of its own layer-wide scale,
    computed in at least float32 and returned in g's dtype."""
    if k is None:
        return g
    step = quantization_step(g, k)
    return torch.div(g, step).round_().mul_(step).to(g.dtype)


# ---------------------------------------------------------------------------------------------
# weights


def ste_mask(w: Tensor) -> Tensor:
    """Where the straight-through estimator lets the gradient pass: |w| <= 1."""
    return w.abs() <= 1


def _ternary(w: Tensor, delta: Tensor) -> Tensor:
    return (w > delta).to(w.dtype) - (w < -delta).to(w.dtype)


def ternary_threshold(w: Tensor) -> Tensor:
    """delta = 0.7 mean|W| per output filter (a constant for the gradient)."""
    return TERNARY_THRESHOLD * w.detach().abs().mean(dim=sample_dims(w), keepdim=True)


def binary_alpha(w: Tensor) -> Tensor:
    """alpha = mean|W| per output filter (XNOR-Net). Summed in float64, so that latent weights
    +-alpha, as a packed file restores them, give back exactly alpha."""
    return w.double().abs().mean(dim=sample_dims(w), keepdim=True).to(w.dtype)


def ternary_alpha(w: Tensor, delta: Tensor) -> Tensor:
    """alpha = mean |w| over the weights with |w| > delta, per output filter (TWN); float64 as above."""
    above = (w.detach().abs() > delta).double()
    dims = sample_dims(w)
    total = (w.double().abs() * above).sum(dim=dims, keepdim=True)
    return (total / above.sum(dim=dims, keepdim=True).clamp(min=1)).to(w.dtype)


def weight_levels(w: Tensor, spec: QuantSpec) -> tuple[Tensor, Tensor | None]:
    """The quantized levels of `w` ({-1, +1} or {-1, 0, +1}) and alpha per output filter (None
    without alpha), as plain tensors. The weights the convolution uses are levels * alpha."""
    w = w.detach()
    if spec.weights == "binary":
        return sign(w), binary_alpha(w) if spec.alpha else None
    delta = ternary_threshold(w)
    return _ternary(w, delta), ternary_alpha(w, delta) if spec.alpha else None


def quantized_weight_values(w: Tensor, spec: QuantSpec) -> Tensor:
    """The weights the convolution computes with (no autograd)."""
    if spec.weights == "fp":
        return w.detach()
    levels, alpha = weight_levels(w, spec)
    return levels if alpha is None else levels.mul_(alpha)


def weight_gradient(w: Tensor, spec: QuantSpec, grad: Tensor) -> Tensor:
    """Gradient for the latent weights from the gradient of the quantized ones: the clipped
    straight-through estimator, times alpha, plus alpha's own gradient (alpha = mean |w| over the
    filter's n binary, or m above-threshold ternary, weights: d alpha / d w_i = level_i / count)."""
    if spec.weights == "fp":
        return grad
    levels, alpha = weight_levels(w, spec)
    grad_w = grad * ste_mask(w)
    if alpha is None:
        return grad_w
    dims = sample_dims(w)
    count = levels.abs().sum(dim=dims, keepdim=True).clamp(min=1)
    return grad_w.mul_(alpha).add_(levels * ((grad * levels).sum(dim=dims, keepdim=True) / count))


# ---------------------------------------------------------------------------------------------
# int8 storage of float weights (shipped files, int8 deployment)


def int8_per_channel(weight: Tensor) -> tuple[Tensor, Tensor]:
    """Symmetric int8 codes and the float32 scale of each output channel: weight ~ codes * scale."""
    weight = weight.float()
    peak = weight.abs().flatten(1).amax(dim=1)
    scale = torch.where(peak > 0, peak / 127.0, torch.ones_like(peak))
    codes = torch.round(weight / scale.view(-1, *[1] * (weight.dim() - 1))).clamp_(-127, 127).to(torch.int8)
    return codes, scale
