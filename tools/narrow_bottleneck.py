"""Narrow a trained DU-Net's dense-layer bottlenecks (the 1x1 conv feeding each 3x3) to fewer channels, keeping
the channels that carry the most, and save it as a checkpoint to fine-tune from (`--set init=OUT`):

    .venv/bin/python tools/narrow_bottleneck.py 300w-dunet2 --bottleneck 64 --out runs/u2_b64_init

A channel's share is estimated without data from what its BN-ReLU passes on for unit-normal inputs,
E[relu(gamma z + beta)], times the size of the 3x3 weights that read it. Every other tensor is copied as is.
"""

from __future__ import annotations

import argparse
import dataclasses
import torch

from dunet.checkpoint import load_checkpoint, load_weights, save_checkpoint
from dunet.engine.pretrained import path_or_pretrained
from dunet.models import build_model
from dunet.models.blocks import BnReluConv, DenseLayer


def channel_share(layer: DenseLayer) -> torch.Tensor:
    """Per bottleneck channel: the expected BN-ReLU output for unit-normal input x the L2 norm of its 3x3 weights."""
    norm = layer.expand.norm
    gamma = norm.weight.detach().abs().clamp_min(1e-8)
    beta = norm.bias.detach()
    t = beta / gamma
    normal = torch.distributions.Normal(0.0, 1.0)
    relu_mean = gamma * normal.log_prob(t).exp() + beta * normal.cdf(t)
    return relu_mean * layer.expand.conv.weight.detach().flatten(2).transpose(0, 1).flatten(1).norm(dim=1)


def narrow(source: str, bottleneck: int):
    ckpt = load_checkpoint(path_or_pretrained(source))
    config = ckpt.card.config
    wide = build_model(config.model).eval()
    load_weights(wide, ckpt)
    narrow_cfg = dataclasses.replace(config, model=config.model.replace(bottleneck=bottleneck))
    slim = build_model(narrow_cfg.model).eval()
    state = dict(wide.state_dict())  # the narrowed tensors replace entries; the rest load as they are
    for name, layer in wide.named_modules():
        if not (isinstance(layer, DenseLayer) and isinstance(layer.expand, BnReluConv)):
            continue
        keep = channel_share(layer).topk(bottleneck).indices.sort().values
        state[f"{name}.squeeze.conv.weight"] = state[f"{name}.squeeze.conv.weight"][keep]
        for stat in ("weight", "bias", "running_mean", "running_var"):
            state[f"{name}.expand.norm.{stat}"] = state[f"{name}.expand.norm.{stat}"][keep]
        state[f"{name}.expand.conv.weight"] = state[f"{name}.expand.conv.weight"][:, keep]
    slim.load_state_dict(state, strict=True)
    return slim, dataclasses.replace(ckpt.card, config=narrow_cfg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("source", help="a checkpoint directory, a .safetensors model or a pretrained name")
    parser.add_argument("--bottleneck", type=int, required=True)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    model, card = narrow(args.source, args.bottleneck)
    params = sum(p.numel() for p in model.parameters())
    print(f"{args.out}: bottleneck {args.bottleneck}, {params / 1e6:.2f} M parameters")
    save_checkpoint(args.out, model, card)


if __name__ == "__main__":
    main()
