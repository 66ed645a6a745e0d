"""Narrow a trained DU-Net, keeping the channels that carry the most, and save it as a checkpoint to fine-tune from
(`--set init=OUT`). Two widths can be narrowed, alone or together:

- `--bottleneck`: the 1x1 conv feeding each dense layer's 3x3 (`model.bottleneck`);
- `--width`: the tensors between blocks (`model.channels`): the stem's output, every adapter's output and the
  inputs of the U-Nets after the first. Each such tensor keeps its own channels, and every layer reading it
  (inside a concatenation) keeps the matching inputs.

    .venv/bin/python tools/narrow.py 300w-dunet2 --width 80 --out runs/u2_w80_init

A channel's share is estimated without data from what the BN-ReLU of each layer reading it passes on for
unit-normal inputs, E[relu(gamma z + beta)], times the size of the weights that read it, summed over its readers.
Every other tensor is copied as is.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch
from torch import Tensor, nn

from dunet.checkpoint import load_checkpoint, load_weights, save_checkpoint
from dunet.runtime.pretrained import path_or_pretrained
from dunet.models import build_model
from dunet.models.blocks import BnReluConv, DenseLayer
from dunet.models.dunet import DUNet
from dunet.models.profile import count_params

BN_STATS = ("weight", "bias", "running_mean", "running_var")


def take(state: dict[str, Tensor], name: str, index: Tensor, dim: int) -> None:
    state[name] = state[name].index_select(dim, index)


def relu_mean(norm: nn.BatchNorm2d) -> Tensor:
    """Per channel: E[relu(gamma z + beta)] for z ~ N(0, 1), what the BN-ReLU passes on."""
    gamma = norm.weight.detach().abs().clamp_min(1e-8)
    beta = norm.bias.detach()
    t = beta / gamma
    normal = torch.distributions.Normal(0.0, 1.0)
    return gamma * normal.log_prob(t).exp() + beta * normal.cdf(t)


def input_share(norm: nn.BatchNorm2d, conv: nn.Conv2d) -> Tensor:
    """Per input channel of a BN-ReLU-Conv: what it passes on x the L2 norm of the weights reading it."""
    return relu_mean(norm) * conv.weight.detach().transpose(0, 1).flatten(1).norm(dim=1)


# ---------------------------------------------------------------- bottleneck

def narrow_bottleneck(model: DUNet, state: dict[str, Tensor], bottleneck: int) -> None:
    """Narrow, in `state` (the model's tensors by state-dict name), every dense layer's bottleneck."""
    for name, layer in model.named_modules():
        if not (isinstance(layer, DenseLayer) and isinstance(layer.expand, BnReluConv)):
            continue
        keep = input_share(layer.expand.norm, layer.expand.conv).topk(bottleneck).indices.sort().values
        take(state, f"{name}.squeeze.conv.weight", keep, 0)
        for stat in BN_STATS:
            take(state, f"{name}.expand.norm.{stat}", keep, 0)
        take(state, f"{name}.expand.conv.weight", keep, 1)


# ---------------------------------------------------------------- width

def width_readers(model: DUNet) -> dict[str, list[str | int]]:
    """For every layer reading width tensors (a ConcatBnReluConv, by module name), the pieces of its concatenated
    input in order: the name of the layer producing a width tensor, or a number of growth channels (new features
    of a dense layer, not narrowed). Mirrors DUNet._run_units."""
    cfg = model.cfg
    g, k, levels = cfg.growth, cfg.order, cfg.levels
    readers: dict[str, list[str | int]] = {}

    def unit_input(n: int) -> str:
        return "stem" if n == 0 else f"unit_inputs.{n - 1}"

    def position(prefix: str, n: int, inputs: list[str], adapters: tuple[str, ...]) -> None:
        history = [g] * min(n, k)  # new features of the K preceding U-Nets at this position
        readers[f"{prefix}.layers.{n}.squeeze"] = inputs + history
        for adapter in adapters:
            readers[f"{prefix}.{adapter}.{n}"] = inputs + history + [g]

    head = 0
    for n in range(cfg.units):
        if n > 0:
            readers[f"unit_inputs.{n - 1}"] = [f"up.0.ahead.{n - 1}"] + [unit_input(j) for j in range(max(0, n - k), n)]
        for level in range(levels):
            x = unit_input(n) if level == 0 else f"down.{level - 1}.ahead.{n}"
            position(f"down.{level}", n, [x], ("ahead", "skip"))
        position("bottom", n, [f"down.{levels - 1}.ahead.{n}"], ("ahead",))
        for level in reversed(range(levels)):
            x = f"bottom.ahead.{n}" if level == levels - 1 else f"up.{level + 1}.ahead.{n}"
            position(f"up.{level}", n, [x, f"down.{level}.skip.{n}"], ("ahead",))
        if head < len(model.anchors) and n == model.anchors[head]:
            readers[f"heads.{head}"] = [f"up.0.ahead.{n}"]
            head += 1
    return readers


def spans(pieces: list[str | int], width: int):
    """(piece, first channel, channels) of each piece of a reader's concatenated input."""
    offset = 0
    for piece in pieces:
        size = piece if isinstance(piece, int) else width
        yield piece, offset, size
        offset += size


def width_plan(model: DUNet, width: int) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(kept output channels of every width-tensor producer, kept input channels of every reader)."""
    modules = dict(model.named_modules())
    readers = width_readers(model)
    share: dict[str, Tensor] = {}
    for reader, pieces in readers.items():
        scores = input_share(modules[reader].norm, modules[reader].conv)
        for piece, start, size in spans(pieces, model.cfg.width):
            if isinstance(piece, str):
                share[piece] = share.get(piece, 0) + scores[start:start + size]
    keep = {name: s.topk(width).indices.sort().values for name, s in share.items()}
    reader_keep = {
        reader: torch.cat([start + (torch.arange(size) if isinstance(piece, int) else keep[piece])
                           for piece, start, size in spans(pieces, model.cfg.width)])
        for reader, pieces in readers.items()
    }
    return keep, reader_keep


def narrow_width(model: DUNet, state: dict[str, Tensor], width: int) -> None:
    """Narrow, in `state`, every width-tensor producer's outputs and its readers' inputs."""
    keep, reader_keep = width_plan(model, width)
    for producer, index in keep.items():
        if producer == "stem":  # conv, then its own BN
            take(state, "stem.0.weight", index, 0)
            for stat in BN_STATS:
                take(state, f"stem.1.{stat}", index, 0)
        else:
            take(state, f"{producer}.conv.weight", index, 0)
    for reader, index in reader_keep.items():
        for stat in BN_STATS:
            take(state, f"{reader}.norm.{stat}", index, 0)
        take(state, f"{reader}.conv.weight", index, 1)


def narrow(source: str, bottleneck: int | None = None, width: int | None = None):
    """(the narrowed network, its card, its training config: the source's with the narrowed model, or None if the
    source carries none)."""
    ckpt = load_checkpoint(path_or_pretrained(source))
    network = ckpt.card.network
    if network.arch != "dunet" or network.quant != "none":
        raise SystemExit(f"{source}: only full-precision DU-Nets can be narrowed")
    if width is not None and network.refine:
        raise SystemExit(f"--width: {source} has refinement, which the width cut does not follow")
    for what, given, now in (("--width", width, network.width), ("--bottleneck", bottleneck, network.bottleneck)):
        if given is not None and not 0 < given <= now:
            raise SystemExit(f"{what} {given}: {source} has {now} channels there; give 1 to {now}")
    model = build_model(network).eval()
    load_weights(model, ckpt)
    state = {name: tensor.detach() for name, tensor in model.state_dict().items()}
    changes = {}
    if width is not None:  # both cut the bottleneck convs (inputs, outputs): the cuts compose
        narrow_width(model, state, width)
        changes["channels"] = width
    if bottleneck is not None:
        narrow_bottleneck(model, state, bottleneck)
        changes["bottleneck"] = bottleneck
    narrowed = network.replace(**changes)
    slim = build_model(narrowed).eval()
    slim.load_state_dict(state, strict=True)
    # The training config travels beside the card; keep it in step so `--resume` and eval see the narrow network.
    config = dataclasses.replace(ckpt.config, model=narrowed) if ckpt.config is not None else None
    return slim, dataclasses.replace(ckpt.card, network=narrowed), config


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a checkpoint directory, a .safetensors model or a pretrained name")
    parser.add_argument("--bottleneck", type=int, help="new width of the dense layers' bottlenecks")
    parser.add_argument("--width", type=int, help="new width of the tensors between blocks (model.channels)")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    if args.bottleneck is None and args.width is None:
        parser.error("give --bottleneck, --width or both")
    model, card, config = narrow(args.source, args.bottleneck, args.width)
    params = count_params(model)
    m = card.network
    print(f"{args.out}: width {m.width}, bottleneck {m.bottleneck}, {params / 1e6:.2f} M parameters")
    save_checkpoint(args.out, model, card, config=config)


if __name__ == "__main__":
    main()
