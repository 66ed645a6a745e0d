"""tools/narrow.py: a narrowed DU-Net keeps the channels that carry the most, and every layer reading a narrowed
tensor keeps the matching inputs."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from dunet.checkpoint import save_checkpoint
from dunet.data.synthetic import synthetic_source
from dunet.engine.config import config_from_dict
from dunet.models import build_model
from dunet.models.blocks import DenseLayer
from tests.engine.conftest import TINY
from tests.tools.helpers import load_tool

def wide_model(**changes):
    """A small DU-Net whose BNs have non-trivial statistics, and in which a channel that is 0 everywhere passes
    nothing on: every BN has mean 0 and bias <= 0, so BN-ReLU maps 0 to 0."""
    config = config_from_dict({**TINY, "model": {**TINY["model"], **changes}})
    model = build_model(config.model).eval()
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.zero_()
            module.running_var.uniform_(0.1, 0.3)  # default conv weights shrink activations
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.1, 0.0)
    return config, model


def silence_half_of_each_bottleneck(model) -> None:
    """Half of every bottleneck outputs nothing after its BN-ReLU, so a cut to the other half changes nothing."""
    wide = model.cfg.bottleneck
    for layer in model.modules():
        if isinstance(layer, DenseLayer):
            silent = torch.randperm(wide)[: wide // 2]
            layer.expand.norm.weight.data[silent] = 0.0
            layer.expand.norm.bias.data[silent] = -1.0


def outputs(model, size):
    torch.manual_seed(1)
    images = torch.rand(2, 3, size, size)
    with torch.no_grad():
        return model(images)


def test_dropping_bottleneck_channels_that_pass_nothing_on_leaves_the_output_unchanged(tmp_path):
    tool = load_tool("narrow")
    config, model = wide_model()
    silence_half_of_each_bottleneck(model)
    source = save_checkpoint(tmp_path / "wide", model, config.model_card(synthetic_source(1).spec), config=config)
    wide = config.model.bottleneck
    narrow, card, narrow_config = tool.narrow(str(source), bottleneck=wide // 2)
    assert card.network == narrow_config.model == config.model.replace(bottleneck=wide // 2)
    for a, b in zip(outputs(model, config.model.input_size), outputs(narrow, config.model.input_size), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("order", [1, 2])
@pytest.mark.parametrize("bottleneck_too", [False, True])
def test_a_width_cut_computes_what_the_wide_model_does_with_the_dropped_channels_zeroed(tmp_path, order, bottleneck_too):
    """Zeroing a producer's dropped output channels needs no knowledge of who reads them; if the cut took the wrong
    inputs of any reader (a concatenation's offsets, an earlier U-Net's input, a skip), the outputs would differ."""
    tool = load_tool("narrow")
    config, model = wide_model(units=3, order=order, levels=2)
    if bottleneck_too:
        silence_half_of_each_bottleneck(model)
    source = save_checkpoint(tmp_path / "wide", model, config.model_card(synthetic_source(1).spec), config=config)
    width = config.model.width // 2
    bottleneck = config.model.bottleneck // 2 if bottleneck_too else None
    narrow, card, _ = tool.narrow(str(source), bottleneck=bottleneck, width=width)
    assert card.network.width == width
    assert card.network.bottleneck == (bottleneck or config.model.bottleneck)

    keep, _ = tool.width_plan(model, width)
    units, levels = 3, 2
    assert len(keep) == 1 + units * (2 * levels + 1 + levels) + (units - 1)  # stem, adapters, U-Net inputs
    assert len({tuple(k.tolist()) for k in keep.values()}) > 1  # each tensor keeps its own channels
    modules = dict(model.named_modules())
    with torch.no_grad():
        for producer, kept in keep.items():
            conv = modules["stem.0"] if producer == "stem" else modules[producer].conv
            dropped = torch.ones(conv.out_channels, dtype=torch.bool)
            dropped[kept] = False
            conv.weight[dropped] = 0.0
    size = config.model.input_size
    for a, b in zip(outputs(model, size), outputs(narrow, size), strict=True):
        assert torch.allclose(a, b, atol=1e-5)
    assert a.abs().max() > 0  # the check is not comparing zeros


def test_narrowing_needs_a_full_precision_dunet(tmp_path):
    tool = load_tool("narrow")
    config, _ = wide_model()
    config = dataclasses.replace(config, model=config.model.replace(quant="bw"))
    model = build_model(config.model)
    source = save_checkpoint(tmp_path / "bw", model, config.model_card(synthetic_source(1).spec), config=config)
    with pytest.raises(SystemExit, match="full-precision"):
        tool.narrow(str(source), width=8)


def test_a_width_the_model_does_not_have_is_refused_in_one_line(tmp_path):
    tool = load_tool("narrow")
    config, model = wide_model()
    source = save_checkpoint(tmp_path / "wide", model, config.model_card(synthetic_source(1).spec), config=config)
    with pytest.raises(SystemExit, match=f"--width 99: .* has {config.model.width} channels"):
        tool.narrow(str(source), width=99)
    with pytest.raises(SystemExit, match="--bottleneck 0"):
        tool.narrow(str(source), bottleneck=0)
