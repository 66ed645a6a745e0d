"""Stacked hourglass baseline (Newell et al., ECCV 2016) with 256-channel residual modules,
or with the hierarchical multi-scale block of Bulat & Tzimiropoulos (`block="hierarchical"`)."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dunet.models.blocks import BnReluConv, MaxPool2x2, Residual, max_pool2x2
from dunet.models.config import ModelConfig, loss_anchors
from dunet.quant import QuantSpec, conv2d


class Hourglass(nn.Module):
    """One hourglass: at each level a residual branch at this resolution plus
    pool -> residual -> (inner hourglass | residual) -> residual -> upsample."""

    def __init__(self, depth: int, width: int, block: str, quant: QuantSpec):
        super().__init__()
        opts = dict(block=block, quant=quant)
        self.upper = Residual(width, width, **opts)
        self.down = Residual(width, width, **opts)
        self.inner = Hourglass(depth - 1, width, block, quant) if depth > 1 else Residual(width, width, **opts)
        self.up = Residual(width, width, **opts)

    def forward(self, x: Tensor) -> Tensor:
        low = self.up(self.inner(self.down(max_pool2x2(x))))
        return self.upper(x) + F.interpolate(low, scale_factor=2.0, mode="nearest")


class StackedHourglass(nn.Module):
    """Input: RGB in [0, 1], (B, 3, S, S). Output: tuple of (B, landmarks, S/4, S/4) heatmaps at the
    supervised stacks, final last. Each stack's features and heatmaps are merged back into the next."""

    def __init__(self, cfg: ModelConfig, quant: QuantSpec):
        super().__init__()
        self.cfg = cfg
        w, q, b = cfg.width, quant, cfg.block
        # First layer full precision; then residuals 64 -> 128, pool, 128 -> w, w -> w. With 1-bit inputs the
        # stem ends at its BN, without the ReLU: every unit after it takes the sign of a BN output of its own.
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, 64, 7, stride=2, padding=3, bias=True),
            nn.BatchNorm2d(64),
            nn.Identity() if q.sign_inputs else nn.ReLU(inplace=True),
            Residual(64, 128, block=b, quant=q),
            MaxPool2x2(),
            Residual(128, w, block=b, quant=q),
            Residual(w, w, block=b, quant=q),
        )
        self.hourglasses = nn.ModuleList(Hourglass(cfg.levels, w, b, q) for _ in range(cfg.units))
        # Residual -> conv -> BN; the ReLU after it is in forward (the merge conv may take the BN output).
        # With 1-bit inputs every quantized conv reads a BN output (BN -> sign -> conv): the 1x1 after each
        # stack reads the residual stream and the heatmap merge reads heatmaps, neither centred, so their sign
        # would be nearly constant and nothing would pass (measured: a fully binary HG(2) stayed at ~100 % NME).
        # So those two get their own BN; full-precision and weight-only models keep Newell's layers exactly.
        def pointwise(conv_in: int) -> nn.Module:
            if q.sign_inputs:
                return BnReluConv(conv_in, w, 1, bias=True, quant=q)
            return conv2d(conv_in, w, 1, bias=True, quant=q)

        self.features = nn.ModuleList(
            nn.Sequential(Residual(w, w, block=b, quant=q), pointwise(w), nn.BatchNorm2d(w)) for _ in range(cfg.units)
        )
        # Heads are the last layers: full precision.
        self.heads = nn.ModuleList(nn.Conv2d(w, cfg.landmarks, 1, bias=True) for _ in range(cfg.units))
        self.merge_features = nn.ModuleList(conv2d(w, w, 1, bias=True, quant=q) for _ in range(cfg.units - 1))
        # With 1-bit inputs the merge conv takes the sign of the BN output (BN -> sign -> conv, as every
        # binary unit); the sign of the ReLU output would be +1 everywhere.
        self.merge_takes_sign = q.sign_inputs
        self.merge_heatmaps = nn.ModuleList(pointwise(cfg.landmarks) for _ in range(cfg.units - 1))
        self.anchors = loss_anchors(cfg.units, cfg.heads)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        x = self.stem(images)
        outputs = []
        for n in range(self.cfg.units):
            normed = self.features[n](self.hourglasses[n](x))
            features = F.relu(normed)
            heatmaps = self.heads[n](features)
            if n in self.anchors:
                outputs.append(heatmaps)
            if n < self.cfg.units - 1:
                merged = self.merge_features[n](normed if self.merge_takes_sign else features)
                x = x + merged + self.merge_heatmaps[n](heatmaps)
        return tuple(outputs)
