"""The network of a DU-Net model file as an OpenVINO model, built from numpy weights without PyTorch.

`build_network` mirrors dunet/models/dunet.py and dunet/models/blocks.py in eval mode, op for op:
every BN is one multiply and one add per channel, computed here from its weights and running
statistics. The input is "images", (B, 3, S, S) RGB in [0, 1] with any batch B; the one output,
"heatmaps", is the final head's raw (B, landmarks, S/4, S/4) heatmaps, `DUNet(...)(images)[-1]`.

Quantized models run here when only their weights are quantized, from float weights that already are
the quantized values (sign or ternary codes times alpha): a packed file's are (dunet.quant.packing
restores them so, and folds the BN before each quantized conv). Quantized inputs and the hourglass
and hierarchical blocks run with PyTorch.
"""

from __future__ import annotations

import numpy as np
import openvino as ov
import openvino.opset13 as ops

from dunet import DunetError
from dunet.models.config import ModelConfig, loss_anchors
from dunet.quant.spec import parse_quant

BN_EPS = 1e-5  # nn.BatchNorm2d's default; no BN of the model sets another
INPUT_NAME = "images"
OUTPUT_NAME = "heatmaps"
PYTORCH_BACKEND = "runs with the PyTorch backend only (pip install 'dunet[train]')"


def build_network(model: ModelConfig, weights: dict[str, np.ndarray], *,
                  quantized_weights_baked: bool = False) -> ov.Model:
    """The OpenVINO network of `model` with `weights` (a state dict, as `read_weights` gives it).
    `quantized_weights_baked`: the quantized convolutions' weights are already their quantized values,
    as in a packed file; a quantized model's latent weights need the PyTorch weight quantizers."""
    check_supported(model, quantized_weights_baked)
    images = ops.parameter([-1, model.in_channels, model.input_size, model.input_size], np.float32, name=INPUT_NAME)
    heatmaps = _Network(model, weights)(images)
    heatmaps.output(0).get_tensor().set_names({OUTPUT_NAME})
    return ov.Model([ops.result(heatmaps)], [images], "dunet")


def check_supported(model: ModelConfig, quantized_weights_baked: bool = False) -> None:
    """A DunetError unless `build_network` can run `model`."""
    quant = parse_quant(model.quant)
    if model.arch != "dunet" or model.block != "bottleneck":
        raise DunetError(f"a model of arch {model.arch!r} with block {model.block!r} {PYTORCH_BACKEND}")
    if quant.input_bits is not None:
        raise DunetError(f"a model with quantized inputs (quant {model.quant!r}) {PYTORCH_BACKEND}")
    if quant.weights != "fp" and not quantized_weights_baked:
        raise DunetError(f"quant {model.quant!r}: a quantized checkpoint runs without PyTorch once packed "
                         "(`dunet export --packed`), which stores the weights it computes with; "
                         "or install dunet[train]")


class _Network:
    """DUNet.forward on OpenVINO nodes; each method is the module of the same name in dunet.models."""

    def __init__(self, cfg: ModelConfig, weights: dict[str, np.ndarray]):
        self.cfg, self.weights = cfg, weights

    def __call__(self, images: ov.Node) -> ov.Node:
        x = self.stem(images)
        heatmaps, first_input, last_input = self.run_units(x)
        if self.cfg.refine:
            x = self.refine_merge("refine", [first_input, last_input])
            heatmaps = self.run_units(x)[0]
        return heatmaps[-1]

    def stem(self, images: ov.Node) -> ov.Node:
        x = self.conv("stem.0", images, self.cfg.width, 7, stride=2)
        return max_pool2x2(ops.relu(self.batch_norm("stem.1", x)))

    def run_units(self, x: ov.Node) -> tuple[list[ov.Node], ov.Node, ov.Node]:
        k, levels = self.cfg.order, self.cfg.levels
        history: list[list[ov.Node]] = [[] for _ in range(2 * levels + 1)]  # new features of the K last U-Nets
        past_inputs: list[ov.Node] = []  # inputs of the K last U-Nets
        anchors = loss_anchors(self.cfg.units, self.cfg.heads)
        heatmaps: list[ov.Node] = []
        first_input = x
        for n in range(self.cfg.units):
            if n > 0:
                x = self.concat_bn_relu_conv(f"unit_inputs.{n - 1}", [x] + past_inputs, self.cfg.width)
            if k > 0:
                past_inputs = (past_inputs + [x])[-k:]
            unit_input = x
            skips = []
            for level in range(levels):
                x, skip, new = self.semantic_position(f"down.{level}", n, [x], history[level], skip=True)
                history[level] = (history[level] + [new])[-k:] if k > 0 else []
                skips.append(skip)
                x = max_pool2x2(x)
            x, _, new = self.semantic_position("bottom", n, [x], history[levels])
            history[levels] = (history[levels] + [new])[-k:] if k > 0 else []
            for level in reversed(range(levels)):
                pos = levels + 1 + level
                x, _, new = self.semantic_position(f"up.{level}", n, [upsample2x(x), skips[level]], history[pos])
                history[pos] = (history[pos] + [new])[-k:] if k > 0 else []
            if n in anchors:
                head = anchors.index(n)
                heatmaps.append(self.concat_bn_relu_conv(f"heads.{head}", [x], self.cfg.landmarks))
        return heatmaps, first_input, unit_input

    def semantic_position(self, prefix: str, unit: int, inputs: list[ov.Node], history: list[ov.Node], *,
                          skip: bool = False) -> tuple[ov.Node, ov.Node | None, ov.Node]:
        features = inputs + history
        new = self.dense_layer(f"{prefix}.layers.{unit}", features)
        features = features + [new]
        to_skip = self.concat_bn_relu_conv(f"{prefix}.skip.{unit}", features, self.cfg.width) if skip else None
        return self.concat_bn_relu_conv(f"{prefix}.ahead.{unit}", features, self.cfg.width), to_skip, new

    def refine_merge(self, prefix: str, features: list[ov.Node], layers: int = 2) -> ov.Node:
        for i in range(layers):
            features = features + [self.dense_layer(f"{prefix}.layers.{i}", features)]
        return self.concat_bn_relu_conv(f"{prefix}.out", features, self.cfg.width)

    def dense_layer(self, prefix: str, features: list[ov.Node]) -> ov.Node:
        x = self.concat_bn_relu_conv(f"{prefix}.squeeze", features, self.cfg.bottleneck)
        return self.bn_relu_conv(f"{prefix}.expand", x, self.cfg.growth, 3)

    def concat_bn_relu_conv(self, prefix: str, features: list[ov.Node], out_channels: int) -> ov.Node:
        x = features[0] if len(features) == 1 else ops.concat(features, axis=1)
        return self.bn_relu_conv(prefix, x, out_channels, 1)

    def bn_relu_conv(self, prefix: str, x: ov.Node, out_channels: int, kernel_size: int) -> ov.Node:
        return self.conv(f"{prefix}.conv", ops.relu(self.batch_norm(f"{prefix}.norm", x)), out_channels, kernel_size)

    def conv(self, prefix: str, x: ov.Node, out_channels: int, kernel_size: int, stride: int = 1) -> ov.Node:
        shape = (out_channels, channels(x), kernel_size, kernel_size)
        pad = [kernel_size // 2] * 2
        return ops.convolution(x, self.tensor(f"{prefix}.weight", shape), [stride] * 2, pad, pad, [1, 1])

    def batch_norm(self, prefix: str, x: ov.Node) -> ov.Node:
        """Eval-mode BN, (x - mean) / sqrt(var + eps) * weight + bias, as x * scale + shift."""
        shape = (channels(x),)
        weight, bias, mean, var = (self.tensor(f"{prefix}.{name}", shape).astype(np.float64)
                                   for name in ("weight", "bias", "running_mean", "running_var"))
        scale = weight / np.sqrt(var + BN_EPS)
        per_channel = (1, -1, 1, 1)
        return ops.add(ops.multiply(x, scale.reshape(per_channel).astype(np.float32)),
                       (bias - mean * scale).reshape(per_channel).astype(np.float32))

    def tensor(self, key: str, shape: tuple[int, ...]) -> np.ndarray:
        """The float32 weight `key`, which must have `shape`."""
        value = self.weights.get(key)
        if value is None:
            raise DunetError(f"the weights do not fit the model: no tensor {key!r} (wrong architecture?)")
        if tuple(value.shape) != shape:
            raise DunetError(f"the weights do not fit the model: tensor {key!r} has shape {tuple(value.shape)} "
                             f"but the model needs {shape} (wrong architecture or landmark count?)")
        return np.asarray(value, dtype=np.float32)


def channels(x: ov.Node | ov.Output) -> int:
    output = x if isinstance(x, ov.Output) else x.output(0)
    return output.get_partial_shape()[1].get_length()


def max_pool2x2(x: ov.Node) -> ov.Output:
    return ops.max_pool(x, [2, 2], [1, 1], [0, 0], [0, 0], [2, 2]).output(0)  # the values; output 1: indices


def upsample2x(x: ov.Node) -> ov.Node:
    """Nearest 2x upsampling: output pixel i is input pixel i // 2, as F.interpolate(scale_factor=2, "nearest")."""
    return ops.interpolate(x, np.array([2.0, 2.0], np.float32), "nearest", "scales",
                           coordinate_transformation_mode="asymmetric", nearest_mode="floor",
                           axes=np.array([2, 3], np.int64))
