"""Quantized convolutions: the layer every quantizable conv of every model is built with.

`QConv2d` computes with quantized weights and, when the spec has input bits, with k-bit inputs, or
with sign(x) for 1-bit inputs; when it has gradient bits, the error it receives, the error it sends
back and its weight gradient are on the k-bit grid. With k-bit inputs, autograd keeps only the int8
codes of the input and a per-sample step, never a float copy (with sign inputs, the signs and the
straight-through mask at one bit each): the convolution is one autograd Function that recomputes the
dequantized input, and the quantized weights, in backward.

A pre-activation unit BN -> ReLU -> QConv would still keep floats for BN and ReLU. `bn_relu_conv`
runs it as one Function that keeps the int8 codes of the normalised input (x - mean) / std, the
ReLU mask at one bit per element and 1/std per channel, and recomputes BN-ReLU-quantize in backward
(see docs/quantization.md). Before a conv with 1-bit inputs the unit is BN -> sign -> QConv instead,
without the ReLU (`unit_activation`), as XNOR-Net and Bulat & Tzimiropoulos binarize. It also
fixes how BN is computed in eval mode (folded into one scale and shift per channel), which is what
lets a packed file store two numbers per BN channel and still reproduce the outputs bit for bit.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function

from dunet.quant.quantizers import (
    dequantize, max_code, quantization_step, quantize_error, quantize_input, quantized_weight_values, sample_dims,
    sign, sign_ste_mask, weight_gradient,
)
from dunet.quant.spec import MAX_BITS, QuantSpec

_BN_DIMS = (0, 2, 3)


class QConv2d(nn.Conv2d):
    """nn.Conv2d with quantized weights (and inputs and gradients, as `spec` says).
    Parameters and state-dict keys are those of nn.Conv2d; `weight` holds the float latent weights."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, *, spec: QuantSpec, stride: int = 1,
                 padding: int = 0, bias: bool = False):
        super().__init__(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
        self.spec = spec

    def forward(self, x: Tensor) -> Tensor:
        if self.spec.sign_inputs and not torch.is_grad_enabled():  # inference, export: no bits to keep
            return F.conv2d(sign(x), self.quantized_weight(), self.bias, *self._geometry())
        return _QConv.apply(x, self.weight, self.bias, self.spec, self._geometry())

    @torch.no_grad()
    def quantized_weight(self) -> Tensor:
        """The weights the layer computes with (for inspection and export)."""
        return quantized_weight_values(self.weight, self.spec)

    def _geometry(self) -> tuple:
        return self.stride, self.padding, self.dilation, self.groups

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, quant={self.spec.name}"


def conv2d(in_channels: int, out_channels: int, kernel_size: int, *, stride: int = 1, padding: int | None = None,
           bias: bool = False, quant: QuantSpec = QuantSpec()) -> nn.Module:
    """A convolution, quantized as `quant` says (parsed once per model by `build_model`). First and last
    layers of a model call nn.Conv2d directly."""
    if padding is None:
        padding = kernel_size // 2
    if not quant.enabled:
        return nn.Conv2d(in_channels, out_channels, kernel_size, stride=stride, padding=padding, bias=bias)
    return QConv2d(in_channels, out_channels, kernel_size, spec=quant, stride=stride, padding=padding, bias=bias)


def saves_codes(conv: nn.Module) -> bool:
    """True for a quantized conv with k-bit or sign inputs: its unit keeps only int8 codes and bits for
    backward, so checkpointing it (memory_efficient) would only recompute for nothing."""
    return isinstance(conv, QConv2d) and conv.spec.input_bits is not None


def unit_activation(conv: nn.Module) -> Callable[[Tensor], Tensor]:
    """The activation between BN and `conv` in a pre-activation unit: ReLU, or none before a conv with
    1-bit inputs, which takes sign(x) of the BN output itself (BN -> sign -> conv, as XNOR-Net and
    Bulat & Tzimiropoulos binarize; the sign of a ReLU output would be +1 everywhere)."""
    if isinstance(conv, QConv2d) and conv.spec.sign_inputs:
        return _no_activation
    return F.relu


def _no_activation(x: Tensor) -> Tensor:
    return x


# ---------------------------------------------------------------------------------------------
# the quantized convolution


def _conv_backward(grad: Tensor, conv_input: Tensor, weight: Tensor, spec: QuantSpec, geometry: tuple,
                   has_bias: bool, needs: tuple[bool, bool, bool]) -> tuple[Tensor | None, ...]:
    """Gradients of conv(conv_input, quantized weight) + bias for the incoming `grad`, which is first
    put on the k-bit grid; the weight gradient goes back through the weight quantizer (STE, alpha)
    and onto the k-bit grid too. The quantized weights are recomputed, not kept from forward.
    The convolution runs in grad's dtype, the one forward's ran in (bfloat16 under autocast)."""
    stride, padding, dilation, groups = geometry
    dtype = grad.dtype
    grad = quantize_error(grad, spec.grad_bits)
    grad_input, grad_weight_q, grad_bias = torch.ops.aten.convolution_backward(
        grad, conv_input.to(dtype), quantized_weight_values(weight, spec).to(dtype),
        [weight.shape[0]] if has_bias else None, stride, padding, dilation, False, [0, 0], groups,
        [needs[0], needs[1], has_bias and needs[2]],
    )
    grad_weight = None
    if needs[1]:
        grad_weight = weight_gradient(weight, spec, grad_weight_q.to(weight.dtype))
        grad_weight = quantize_error(grad_weight, spec.grad_bits)
    if grad_bias is not None:
        grad_bias = grad_bias.to(weight.dtype)
    return grad_input, grad_weight, grad_bias


class _QConv(Function):
    @staticmethod
    def forward(ctx, x: Tensor, weight: Tensor, bias: Tensor | None, spec: QuantSpec, geometry: tuple) -> Tensor:
        if spec.sign_inputs:  # one bit for the sign, one for where the straight-through gradient passes
            ctx.save_for_backward(pack_bits(x >= 0), pack_bits(sign_ste_mask(x)), weight)
            ctx.shape = x.shape
            x = sign(x)
        elif spec.input_bits is not None:
            codes, step = quantize_input(x, spec.input_bits)
            x = dequantize(codes, step)
            ctx.save_for_backward(codes, step, weight)
        else:
            ctx.save_for_backward(x, weight)
        ctx.spec, ctx.geometry, ctx.has_bias = spec, geometry, bias is not None
        return F.conv2d(x, quantized_weight_values(weight, spec), bias, *geometry)

    @staticmethod
    def backward(ctx, grad: Tensor):
        spec = ctx.spec
        if spec.sign_inputs:
            sign_bits, mask_bits, weight = ctx.saved_tensors
            x = unpack_signs(sign_bits, ctx.shape)
        elif spec.input_bits is not None:
            codes, step, weight = ctx.saved_tensors
            x = dequantize(codes, step)
        else:
            x, weight = ctx.saved_tensors
        grad_input, grad_weight, grad_bias = _conv_backward(
            grad, x, weight, spec, ctx.geometry, ctx.has_bias, ctx.needs_input_grad[:3]
        )
        if grad_input is not None:
            if spec.sign_inputs:  # straight through sign(x) where |x| < 1
                grad_input = grad_input.mul_(unpack_bits(mask_bits, ctx.shape))
            grad_input = quantize_error(grad_input, spec.grad_bits)
        return grad_input, grad_weight, grad_bias, None, None


# ---------------------------------------------------------------------------------------------
# the pre-activation unit BN -> ReLU -> QConv


def folded_batch_norm(norm: nn.BatchNorm2d) -> tuple[Tensor, Tensor]:
    """Eval-mode BN as one scale and shift per channel: bn(x) = x * scale + shift."""
    scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
    return scale, norm.bias - norm.running_mean * scale


def bn_relu_conv(x: Tensor, norm: nn.BatchNorm2d, conv: nn.Module) -> Tensor:
    """conv(relu(norm(x))), or conv(norm(x)) before a conv with 1-bit inputs, which takes its sign
    (`unit_activation`). For a full-precision conv exactly that; for a QConv2d, eval-mode BN is folded
    (`folded_batch_norm`), and with k-bit or sign inputs training runs as one fused Function that keeps
    only int8 codes and bits. Running statistics are updated once per call, as nn.BatchNorm2d does."""
    activation = unit_activation(conv)
    if not isinstance(conv, QConv2d) or norm.weight is None or norm.bias is None:
        return conv(activation(norm(x)))
    if not norm.training and norm.running_mean is not None:
        scale, shift = folded_batch_norm(norm)
        return conv(activation(torch.addcmul(_per_channel(shift), x, _per_channel(scale))))
    if conv.spec.input_bits is None:
        return conv(F.relu(norm(x)))
    running_mean = running_var = None
    momentum = 0.0
    if norm.training and norm.track_running_stats:  # as nn.BatchNorm2d.forward
        norm.num_batches_tracked.add_(1)
        momentum = norm.momentum if norm.momentum is not None else 1.0 / float(norm.num_batches_tracked)
        running_mean, running_var = norm.running_mean, norm.running_var
    fused = _BnSignQConv if conv.spec.sign_inputs else _BnReluQConv
    return fused.apply(x, norm.weight, norm.bias, conv.weight, conv.bias, running_mean, running_var,
                       momentum, norm.eps, conv.spec, conv._geometry())


def _per_channel(t: Tensor) -> Tensor:
    return t.view(1, -1, 1, 1)


def pack_bits(mask: Tensor) -> Tensor:
    """A bool tensor as uint8, eight elements per byte."""
    flat = mask.reshape(-1).view(torch.uint8)
    if flat.numel() % 8:
        flat = F.pad(flat, (0, 8 - flat.numel() % 8))
    flat = flat.view(-1, 8)
    packed = flat[:, 0].clone()
    for bit in range(1, 8):
        packed |= flat[:, bit] << bit
    return packed


def unpack_bits(packed: Tensor, shape: torch.Size) -> Tensor:
    bits = (packed[:, None] >> torch.arange(8, dtype=torch.uint8, device=packed.device)) & 1
    return bits.view(-1)[: shape.numel()].view(torch.bool).view(shape)


def unpack_signs(packed: Tensor, shape: torch.Size) -> Tensor:
    """The float32 signs {-1, +1} packed by pack_bits(x >= 0)."""
    return torch.where(unpack_bits(packed, shape), 1.0, -1.0)


def _batch_norm_codes(x: Tensor, running_mean: Tensor | None, running_var: Tensor | None, momentum: float,
                      eps: float, bits: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Training-mode BN's normalised input x_hat = (x - mean) / std (batch statistics; updates the running
    ones), the k-bit codes and per-sample step that backward keeps of it, and 1/std per channel."""
    x_hat, _, inv_std = torch.native_batch_norm(x, None, None, running_mean, running_var, True, momentum, eps)
    x_hat_codes, x_hat_step = quantize_input(x_hat, bits)
    return x_hat, x_hat_codes, x_hat_step, inv_std


def _batch_norm_backward(grad_z: Tensor, x_hat: Tensor, gamma: Tensor, inv_std: Tensor) -> tuple[Tensor, ...]:
    """Gradients of z = gamma (x - mean) / std + beta with batch statistics, per channel:
    grad_x = gamma / std * (grad_z - mean(grad_z) - x_hat * mean(grad_z * x_hat)). Overwrites x_hat."""
    count = grad_z.numel() // grad_z.shape[1]
    grad_beta = grad_z.sum(_BN_DIMS)
    grad_gamma = (grad_z * x_hat).sum(_BN_DIMS)
    grad_x = x_hat.mul_(_per_channel(-grad_gamma / count)).add_(grad_z).sub_(_per_channel(grad_beta / count))
    grad_x.mul_(_per_channel(gamma * inv_std))
    return grad_x, grad_gamma, grad_beta


class _BnReluQConv(Function):
    """Training-mode BN (batch statistics) -> ReLU -> k-bit input -> QConv as one autograd node.

    Forward is exact: the conv sees the k-bit quantized ReLU output. Saved for backward: the int8
    codes of the normalised input x_hat = (x - mean) / std with a per-sample step, the ReLU mask at
    one bit per element, the per-sample step of the conv input, 1/std per channel, and the
    parameters. Backward rebuilds x_hat from its codes (the BN backward uses it) and the conv input
    from x_hat and the mask; where the rebuilt x_hat falls on the other side of a rounding boundary
    of the conv input grid, the rebuilt conv input is one step off (a small error in the weight
    gradient only; the mask, and so which errors pass the ReLU, is exact)."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, weight: Tensor, bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None, momentum: float, eps: float,
                spec: QuantSpec, geometry: tuple) -> Tensor:
        bits = spec.input_bits
        x_hat, x_hat_codes, x_hat_step, inv_std = _batch_norm_codes(x, running_mean, running_var, momentum, eps, bits)
        z = torch.addcmul(_per_channel(beta), x_hat, _per_channel(gamma))
        del x_hat
        mask = z > 0
        conv_input = F.relu_(z)
        conv_step = quantization_step(conv_input, bits, sample_dims(conv_input))
        conv_input.div_(conv_step).round_().mul_(conv_step)
        ctx.save_for_backward(x_hat_codes, x_hat_step, pack_bits(mask), conv_step, inv_std, gamma, beta, weight)
        ctx.spec, ctx.geometry, ctx.has_bias, ctx.shape = spec, geometry, bias is not None, x.shape
        return F.conv2d(conv_input, quantized_weight_values(weight, spec), bias, *geometry)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_hat_codes, x_hat_step, mask_bits, conv_step, inv_std, gamma, beta, weight = ctx.saved_tensors
        spec = ctx.spec
        x_hat = dequantize(x_hat_codes, x_hat_step)
        mask = unpack_bits(mask_bits, ctx.shape)
        conv_input = torch.addcmul(_per_channel(beta), x_hat, _per_channel(gamma)).mul_(mask)
        conv_input.div_(conv_step).round_().clamp_(0, max_code(spec.input_bits)).mul_(conv_step)
        needs = ctx.needs_input_grad
        grad_conv_input, grad_weight, grad_bias = _conv_backward(
            grad, conv_input, weight, spec, ctx.geometry, ctx.has_bias, (True, needs[3], needs[4])
        )
        del conv_input
        grad_z = grad_conv_input.to(x_hat.dtype).mul_(mask)  # straight through the input quantizer, then ReLU
        grad_x, grad_gamma, grad_beta = _batch_norm_backward(grad_z, x_hat, gamma, inv_std)
        grad_x = quantize_error(grad_x, spec.grad_bits)
        return (grad_x, grad_gamma, grad_beta, grad_weight, grad_bias) + (None,) * 6


class _BnSignQConv(Function):
    """Training-mode BN (batch statistics) -> sign -> QConv as one autograd node (1-bit inputs).

    Saved for backward: the sign of the conv input and the straight-through mask |z| < 1, one bit per
    element each, the int8 codes of x_hat = (x - mean) / std at 8 bits with a per-sample step (only
    the BN backward needs x_hat), 1/std per channel and the parameters: 1.25 bytes per input element.
    The conv input is rebuilt exactly from its signs, so the weight gradient and the mask are those of
    an exact float backward; only the BN backward sees the 8-bit x_hat."""

    @staticmethod
    def forward(ctx, x: Tensor, gamma: Tensor, beta: Tensor, weight: Tensor, bias: Tensor | None,
                running_mean: Tensor | None, running_var: Tensor | None, momentum: float, eps: float,
                spec: QuantSpec, geometry: tuple) -> Tensor:
        # x_hat is only for the BN backward: at 8 bits, the most its int8 codes hold.
        x_hat, x_hat_codes, x_hat_step, inv_std = _batch_norm_codes(x, running_mean, running_var, momentum, eps,
                                                                    MAX_BITS)
        z = torch.addcmul(_per_channel(beta), x_hat, _per_channel(gamma))
        del x_hat
        ctx.save_for_backward(x_hat_codes, x_hat_step, pack_bits(z >= 0), pack_bits(sign_ste_mask(z)), inv_std,
                              gamma, weight)
        ctx.spec, ctx.geometry, ctx.has_bias, ctx.shape = spec, geometry, bias is not None, x.shape
        return F.conv2d(sign(z), quantized_weight_values(weight, spec), bias, *geometry)

    @staticmethod
    def backward(ctx, grad: Tensor):
        x_hat_codes, x_hat_step, sign_bits, mask_bits, inv_std, gamma, weight = ctx.saved_tensors
        spec = ctx.spec
        needs = ctx.needs_input_grad
        grad_conv_input, grad_weight, grad_bias = _conv_backward(
            grad, unpack_signs(sign_bits, ctx.shape), weight, spec, ctx.geometry, ctx.has_bias,
            (True, needs[3], needs[4]),
        )
        x_hat = dequantize(x_hat_codes, x_hat_step)
        grad_z = grad_conv_input.to(x_hat.dtype).mul_(unpack_bits(mask_bits, ctx.shape))  # straight through sign
        grad_x, grad_gamma, grad_beta = _batch_norm_backward(grad_z, x_hat, gamma, inv_std)
        grad_x = quantize_error(grad_x, spec.grad_bits)
        return (grad_x, grad_gamma, grad_beta, grad_weight, grad_bias) + (None,) * 6
