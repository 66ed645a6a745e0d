"""Building blocks shared by DU-Net and the stacked hourglass.

All units are pre-activation (BN -> ReLU -> Conv), as in the paper and in Newell et al.; with 1-bit
(sign) inputs BN -> sign -> Conv, the sign taken by the quantized conv (`dunet.quant.unit_activation`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.autograd import Function
from torch.utils.checkpoint import checkpoint

from dunet.quant import QuantSpec, bn_relu_conv, conv2d, saves_codes, unit_activation


class BnReluConv(nn.Module):
    """BN -> ReLU -> Conv on one tensor (BN -> sign -> Conv with 1-bit inputs)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1, *, bias: bool = False,
                 quant: QuantSpec = QuantSpec()):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        self.conv = conv2d(in_channels, out_channels, kernel_size, bias=bias, quant=quant)

    def forward(self, x: Tensor) -> Tensor:
        return bn_relu_conv(x, self.norm, self.conv)


class _MaxPool2x2(Function):
    """2x2 max-pool that keeps, for backward, only which of the 4 window elements won (uint8),
    where F.max_pool2d keeps its whole float input plus int64 indices: 1 byte per output element
    instead of 24. This is most of what is left of training memory once convolutions keep int8
    codes (quantized inputs, docs/quantization.md). Values and gradients are F.max_pool2d's."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:
        out, index = F.max_pool2d(x, 2, return_indices=True)  # index: row * W + col in the input plane
        w = x.shape[-1]
        # Offset from the window's top-left element: 0, 1, W or W + 1. Subtract-and-compare is ~7x
        # faster than dividing the int64 indices.
        rows, cols = out.shape[-2:]
        corner = torch.arange(rows, device=x.device).view(-1, 1) * (2 * w) + torch.arange(cols, device=x.device) * 2
        offset = index - corner
        winner = (offset >= w).to(torch.uint8) * 2 + (offset & 1).to(torch.uint8)  # position in the 2x2 window
        ctx.save_for_backward(winner)
        ctx.in_size = tuple(x.shape[-2:])
        return out

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (winner,) = ctx.saved_tensors
        h, w = ctx.in_size
        rows = torch.arange(0, h, 2, device=grad.device).view(-1, 1) + (winner >> 1).long()
        cols = torch.arange(0, w, 2, device=grad.device) + (winner & 1).long()
        return F.max_unpool2d(grad, rows * w + cols, 2, output_size=(h, w))


def max_pool2x2(x: Tensor) -> Tensor:
    """2x2 max-pool, stride 2. Values are F.max_pool2d's; in training only the uint8 winner index is
    kept for backward (_MaxPool2x2). Inference, tracing and export use F.max_pool2d."""
    if x.requires_grad and torch.is_grad_enabled() and not torch.compiler.is_compiling() \
            and x.shape[-1] % 2 == 0 and x.shape[-2] % 2 == 0:
        return _MaxPool2x2.apply(x)
    return F.max_pool2d(x, 2)


class MaxPool2x2(nn.Module):
    def forward(self, x: Tensor) -> Tensor:
        return max_pool2x2(x)


def batch_norm_train(x: Tensor, norm: nn.BatchNorm2d, update_stats: bool) -> Tensor:
    """Training-mode batch norm; the running statistics move only when `update_stats`, so a segment
    recomputed in backward does not count its batch twice (the public reference code does)."""
    if update_stats:
        return norm(x)
    # Throwaway copies of the statistics: the op then saves the same tensors as on the first run,
    # which checkpoint's recomputation requires.
    return F.batch_norm(x, norm.running_mean.clone(), norm.running_var.clone(), norm.weight, norm.bias,
                        True, 0.0, norm.eps)


def recomputes(memory_efficient: bool, module: nn.Module, features: list[Tensor]) -> bool:
    return memory_efficient and module.training and any(f.requires_grad for f in features)


class ConcatBnReluConv(nn.Module):
    """concat -> BN -> ReLU -> Conv1x1: the segment that makes dense connectivity expensive.

    With `memory_efficient` (paper 3.3) the concatenated, normalised and ReLU'd features are not
    kept for backward but recomputed from the pieces, which are stored anyway. BN statistics are
    updated on the first run of the segment only. `full_precision` keeps a plain nn.Conv2d
    whatever the quantization (heads are a model's last layers).
    """

    def __init__(self, in_channels: int, out_channels: int, *, memory_efficient: bool = False,
                 quant: QuantSpec = QuantSpec(), full_precision: bool = False):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_channels)
        if full_precision:
            self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)
        else:
            self.conv = conv2d(in_channels, out_channels, 1, quant=quant)
        self.memory_efficient = memory_efficient

    def forward(self, features: list[Tensor]) -> Tensor:
        # A unit with k-bit inputs keeps only int8 codes: recomputing it would keep float pieces instead.
        if recomputes(self.memory_efficient, self, features) and not saves_codes(self.conv):
            first_run = [True]  # local to this call: the model keeps no state between calls

            def segment(*pieces: Tensor) -> Tensor:
                update, first_run[0] = first_run[0], False
                x = batch_norm_train(torch.cat(pieces, 1), self.norm, update)
                return self.conv(unit_activation(self.conv)(x))

            return checkpoint(segment, *features, use_reentrant=False)
        return bn_relu_conv(torch.cat(features, 1), self.norm, self.conv)


class HierarchicalConv(nn.Module):
    """Hierarchical, parallel, multi-scale convolutions of Bulat & Tzimiropoulos, without the residual:
    BN-ReLU-Conv3x3 C_in -> C/2, then C/2 -> C/4, then C/4 -> C/4; the three outputs concatenated (= C).
    Stacked 3x3 convolutions see 3x3, 5x5 and 7x7 neighbourhoods."""

    def __init__(self, in_channels: int, out_channels: int, *, bias: bool = False, quant: QuantSpec = QuantSpec()):
        super().__init__()
        half, quarter = out_channels // 2, out_channels // 4
        widths = (half, quarter, out_channels - half - quarter)
        self.branches = nn.ModuleList()
        prev = in_channels
        for width in widths:
            self.branches.append(BnReluConv(prev, width, 3, bias=bias, quant=quant))
            prev = width

    def forward(self, x: Tensor) -> Tensor:
        outs = []
        for branch in self.branches:
            x = branch(x)
            outs.append(x)
        return torch.cat(outs, 1)


class Residual(nn.Module):
    """Residual module of the stacked hourglass (Newell et al.): pre-activation bottleneck
    1x1 -> 3x3 -> 1x1 at half width, or the hierarchical multi-scale block; a BN-ReLU-Conv1x1
    projection on the shortcut when the widths differ."""

    def __init__(self, in_channels: int, out_channels: int, *, block: str = "bottleneck",
                 quant: QuantSpec = QuantSpec()):
        super().__init__()
        if block == "bottleneck":
            mid = out_channels // 2
            self.body = nn.Sequential(
                BnReluConv(in_channels, mid, 1, bias=True, quant=quant),
                BnReluConv(mid, mid, 3, bias=True, quant=quant),
                BnReluConv(mid, out_channels, 1, bias=True, quant=quant),
            )
        elif block == "hierarchical":
            self.body = HierarchicalConv(in_channels, out_channels, bias=True, quant=quant)
        else:
            raise ValueError(f"unknown block {block!r}")
        if in_channels == out_channels:
            self.shortcut = nn.Identity()
        elif block == "bottleneck" and not quant.sign_inputs:  # Newell: a plain 1x1 conv
            self.shortcut = conv2d(in_channels, out_channels, 1, bias=True, quant=quant)
        else:  # Bulat & Tzimiropoulos: BN-ReLU-Conv1x1 (BN -> sign -> conv with 1-bit inputs: a centred input)
            self.shortcut = BnReluConv(in_channels, out_channels, 1, bias=True, quant=quant)

    def forward(self, x: Tensor) -> Tensor:
        return self.body(x) + self.shortcut(x)


class DenseLayer(nn.Module):
    """The DU-Net block: concat(inputs) -> BN-ReLU-Conv1x1 (bottleneck) -> BN-ReLU-Conv3x3 (growth new features).
    With block="hierarchical" the 3x3 is the multi-scale hierarchical convolution."""

    def __init__(self, in_channels: int, bottleneck: int, growth: int, *, block: str = "bottleneck",
                 memory_efficient: bool = False, quant: QuantSpec = QuantSpec()):
        super().__init__()
        self.memory_efficient = memory_efficient
        self.squeeze = ConcatBnReluConv(in_channels, bottleneck, memory_efficient=memory_efficient, quant=quant)
        if block == "bottleneck":
            self.expand = BnReluConv(bottleneck, growth, 3, quant=quant)
        elif block == "hierarchical":
            self.expand = HierarchicalConv(bottleneck, growth, quant=quant)
        else:
            raise ValueError(f"unknown block {block!r}")

    def forward(self, features: list[Tensor]) -> Tensor:
        if (isinstance(self.expand, BnReluConv) and not saves_codes(self.expand.conv)
                and recomputes(self.memory_efficient, self, features)):
            # Memory-efficient: recompute concat-BN-ReLU-Conv1x1-BN-ReLU; only the input of the 3x3 is kept.
            squeeze, expand = self.squeeze, self.expand
            first_run = [True]

            def segment(*pieces: Tensor) -> Tensor:
                update, first_run[0] = first_run[0], False
                x = batch_norm_train(torch.cat(pieces, 1), squeeze.norm, update)
                x = squeeze.conv(unit_activation(squeeze.conv)(x))
                return unit_activation(expand.conv)(batch_norm_train(x, expand.norm, update))

            return expand.conv(checkpoint(segment, *features, use_reentrant=False))
        return self.expand(self.squeeze(features))
