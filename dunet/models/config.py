"""The model config: a model is a pure function of this."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from dunet.config import check_range, choice
from dunet.data.heatmaps import STRIDE


LIMITS = (  # (key, lowest, highest)
    ("units", 1, 64), ("order", 0, 64), ("landmarks", 1, 1024), ("input_size", 1, 2048), ("in_channels", 1, 4),
    ("channels", 0, 2048), ("growth", 1, 512), ("bottleneck", 1, 2048), ("levels", 1, 8), ("loss_num", 0, 64),
)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = choice("dunet", ("dunet", "hourglass"), "DU-Net (paper) or the stacked hourglass baseline")
    block: str = choice(
        "bottleneck", ("bottleneck", "hierarchical"),
        "bottleneck: DU-Net dense layer / Newell residual; hierarchical: Bulat & Tzimiropoulos multi-scale block",
    )
    units: int = 4  # U-Nets (DU-Net) or hourglass stacks
    order: int = 1  # order-K connectivity; 0 = plain stacked U-Nets of dense blocks, >= units-1 = fully dense
    landmarks: int = 16  # keypoints predicted: one heatmap each (must match the data)
    input_size: int = 256  # square input; heatmaps are input_size / 4
    in_channels: int = 3  # image channels (RGB)
    channels: int = 0  # width between blocks; 0 = the paper's (128 DU-Net, 256 hourglass)
    growth: int = 32  # new features per dense layer
    bottleneck: int = 128  # width of the 1x1 bottleneck in each dense layer
    levels: int = 4  # down-sampling levels per U-Net
    loss_num: int = 0  # supervised heads spread evenly over the units; 0 = every unit
    memory_efficient: bool = False  # recompute concat-BN-ReLU-Conv1x1 in backward (paper 3.3)
    refine: bool = False  # iterative refinement: two passes through the same DU-Net (paper 3.4)
    quant: str = "none"  # none, bw, bw-alpha, tw, tw-alpha, I/W/G bits such as 8/1/8 or 1/1/32 (sign inputs), or bw-alpha-8/1/8 (docs/quantization.md)

    def __post_init__(self) -> None:
        # Upper bounds far past any real model, so that a typo or a damaged file's config is refused in a
        # line instead of building for hours or failing in the allocator.
        for name, low, high in LIMITS:
            check_range(name, getattr(self, name), low, high)
        if self.loss_num > self.units:
            raise ValueError(f"loss_num ({self.loss_num}) cannot exceed units ({self.units})")
        stride = STRIDE * 2**self.levels
        if self.input_size % stride:
            raise ValueError(
                f"input_size {self.input_size} must be a multiple of {stride} "
                f"(stem stride {STRIDE} x 2^levels with levels={self.levels})"
            )
        if self.refine and self.arch != "dunet":
            raise ValueError("refine (iterative refinement) is a DU-Net option")
        from dunet.quant.spec import parse_quant

        parse_quant(self.quant)  # a bad spec fails when the config is read, naming the allowed forms

    @property
    def width(self) -> int:
        if self.channels:
            return self.channels
        return 128 if self.arch == "dunet" else 256

    @property
    def heads(self) -> int:
        return self.loss_num or self.units

    @property
    def heatmap_size(self) -> int:
        return self.input_size // STRIDE

    def replace(self, **changes) -> "ModelConfig":
        return dataclasses.replace(self, **changes)


def loss_anchors(units: int, heads: int) -> list[int]:
    """0-based indices of the supervised units: `heads` of them spread evenly, the last one always."""
    # Half rounds up, as in the reference code (Python 2 round).
    return [int(units / heads * (j + 1) + 0.5) - 1 for j in range(heads)]
