"""DU-Net: N U-Nets whose same-position blocks are densely connected with order-K (paper 3.1-3.4).

Notation: a U-Net has `levels` down positions, one bottom position and `levels` up positions, so
2 * levels + 1 semantic positions. At each position, the block of U-Net n receives its own inputs
plus the `growth` new features that the same position produced in the K preceding U-Nets; after it,
1x1 adapters bring [inputs, those features, its new features] back to the U-Net width.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from dunet.models.blocks import ConcatBnReluConv, DenseLayer, MaxPool2x2, max_pool2x2
from dunet.models.config import ModelConfig, loss_anchors
from dunet.quant import QuantSpec


class SemanticPosition(nn.Module):
    """One semantic position across all U-Nets: a dense layer per U-Net, its adapter forward and,
    on the down path, its adapter to the skip connection."""

    def __init__(self, cfg: ModelConfig, quant: QuantSpec, in_channels: int, out_channels: int, *, skip: bool):
        super().__init__()
        g, k = cfg.growth, cfg.order
        opts = dict(memory_efficient=cfg.memory_efficient, quant=quant)
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + min(n, k) * g, cfg.bottleneck, g, block=cfg.block, **opts)
            for n in range(cfg.units)
        )
        adapter_in = [in_channels + (min(n, k) + 1) * g for n in range(cfg.units)]
        self.ahead = nn.ModuleList(ConcatBnReluConv(c, out_channels, **opts) for c in adapter_in)
        self.skip = nn.ModuleList(ConcatBnReluConv(c, out_channels, **opts) for c in adapter_in) if skip else None

    def forward(self, unit: int, inputs: list[Tensor], history: list[Tensor]) -> tuple[Tensor, Tensor | None, Tensor]:
        """Run U-Net `unit` at this position. `history` holds the new features of the K preceding U-Nets.
        Returns (output forward, output to the skip connection or None, new features)."""
        features = inputs + history
        new = self.layers[unit](features)
        features = features + [new]
        skip = self.skip[unit](features) if self.skip is not None else None
        return self.ahead[unit](features), skip, new


class DUNet(nn.Module):
    """Order-K densely connected U-Nets with intermediate supervision.

    Input: RGB images in [0, 1], (B, 3, S, S). Output: a tuple with the (B, landmarks, S/4, S/4)
    heatmaps of every supervised head, the final one last (with `refine`, both passes' heads).
    """

    def __init__(self, cfg: ModelConfig, quant: QuantSpec):
        super().__init__()
        self.cfg = cfg
        w, levels = cfg.width, cfg.levels
        # First layer: full precision whatever the quantization.
        self.stem = nn.Sequential(
            nn.Conv2d(cfg.in_channels, w, 7, stride=2, padding=3, bias=False),
            nn.BatchNorm2d(w),
            nn.ReLU(inplace=True),
            MaxPool2x2(),
        )
        self.down = nn.ModuleList(SemanticPosition(cfg, quant, w, w, skip=True) for _ in range(levels))
        self.bottom = SemanticPosition(cfg, quant, w, w, skip=False)
        self.up = nn.ModuleList(SemanticPosition(cfg, quant, 2 * w, w, skip=False) for _ in range(levels))
        # Input of U-Net n > 0: adapter of [output of U-Net n-1, inputs of the K preceding U-Nets].
        k = cfg.order
        self.unit_inputs = nn.ModuleList(
            ConcatBnReluConv(w * (1 + min(n, k)), w, memory_efficient=cfg.memory_efficient, quant=quant)
            for n in range(1, cfg.units)
        )
        self.anchors = loss_anchors(cfg.units, cfg.heads)
        # Last layers: full precision.
        self.heads = nn.ModuleList(
            ConcatBnReluConv(w, cfg.landmarks, memory_efficient=cfg.memory_efficient, full_precision=True)
            for _ in self.anchors
        )
        if cfg.refine:
            self.refine = RefineMerge(cfg, quant, 2 * w, w)

    def forward(self, images: Tensor) -> tuple[Tensor, ...]:
        x = self.stem(images)
        heatmaps, first_input, last_input = self._run_units(x)
        if self.cfg.refine:
            x = self.refine([first_input, last_input])
            heatmaps = heatmaps + self._run_units(x)[0]
        return tuple(heatmaps)

    def _run_units(self, x: Tensor) -> tuple[list[Tensor], Tensor, Tensor]:
        k, levels = self.cfg.order, self.cfg.levels
        n_positions = 2 * levels + 1
        history: list[list[Tensor]] = [[] for _ in range(n_positions)]  # new features of the K last U-Nets
        past_inputs: list[Tensor] = []  # inputs of the K last U-Nets
        heatmaps: list[Tensor] = []
        first_input = x
        head = 0
        for n in range(self.cfg.units):
            if n > 0:
                x = self.unit_inputs[n - 1]([x] + past_inputs)
            if k > 0:
                past_inputs = (past_inputs + [x])[-k:]
            unit_input = x
            skips: list[Tensor] = []
            for level in range(levels):
                x, skip, new = self.down[level](n, [x], history[level])
                history[level] = (history[level] + [new])[-k:] if k > 0 else []
                skips.append(skip)
                x = max_pool2x2(x)
            x, _, new = self.bottom(n, [x], history[levels])
            history[levels] = (history[levels] + [new])[-k:] if k > 0 else []
            for level in reversed(range(levels)):
                pos = levels + 1 + level
                x = F.interpolate(x, scale_factor=2.0, mode="nearest")
                x, _, new = self.up[level](n, [x, skips[level]], history[pos])
                history[pos] = (history[pos] + [new])[-k:] if k > 0 else []
            if head < len(self.anchors) and n == self.anchors[head]:
                heatmaps.append(self.heads[head]([x]))
                head += 1
        return heatmaps, first_input, unit_input


class RefineMerge(nn.Module):
    """Iterative refinement (paper 3.4): a small dense block merging the inputs of the first and last
    U-Nets into the refined input of the second pass."""

    def __init__(self, cfg: ModelConfig, quant: QuantSpec, in_channels: int, out_channels: int, layers: int = 2):
        super().__init__()
        g = cfg.growth
        opts = dict(memory_efficient=cfg.memory_efficient, quant=quant)
        self.layers = nn.ModuleList(
            DenseLayer(in_channels + i * g, cfg.bottleneck, g, block=cfg.block, **opts) for i in range(layers)
        )
        self.out = ConcatBnReluConv(in_channels + layers * g, out_channels, **opts)

    def forward(self, features: list[Tensor]) -> Tensor:
        for layer in self.layers:
            features = features + [layer(features)]
        return self.out(features)
