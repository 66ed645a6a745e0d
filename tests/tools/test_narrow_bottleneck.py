"""tools/narrow_bottleneck.py: a narrowed DU-Net keeps the channels that carry the most and every other tensor."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import torch

from dunet.models import build_model
from dunet.models.blocks import DenseLayer

TOOL = Path(__file__).resolve().parents[2] / "tools" / "narrow_bottleneck.py"


def load_tool():
    spec = importlib.util.spec_from_file_location("narrow_bottleneck", TOOL)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dropping_channels_that_pass_nothing_on_leaves_the_output_unchanged(tmp_path):
    """Half of every bottleneck is made silent (its BN-ReLU outputs 0): narrowing to the other half must keep
    those, so the narrowed model computes exactly what the wide one did."""
    from dunet.checkpoint import save_checkpoint
    from dunet.engine.config import config_from_dict
    from tests.engine.conftest import TINY

    tool = load_tool()
    config = config_from_dict(TINY)
    model = build_model(config.model).eval()
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # non-trivial statistics, so the check means something
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
            module.weight.data.uniform_(0.5, 1.5)
    wide = config.model.bottleneck
    silent = torch.randperm(wide)[: wide // 2]
    for layer in model.modules():
        if isinstance(layer, DenseLayer):
            layer.expand.norm.weight.data[silent] = 0.0
            layer.expand.norm.bias.data[silent] = -1.0
    from dunet.card import ModelCard
    from dunet.data.synthetic import synthetic_source

    card = ModelCard(config, synthetic_source(1).spec)
    source = save_checkpoint(tmp_path / "wide", model, card)
    narrow, narrow_card = tool.narrow(str(source), wide // 2)
    assert narrow_card.config.model.bottleneck == wide // 2
    assert narrow_card.config.model.replace(bottleneck=wide) == config.model
    images = torch.rand(2, 3, config.model.input_size, config.model.input_size)
    with torch.no_grad():
        expected, got = model(images), narrow(images)
    for a, b in zip(expected, got):
        assert torch.allclose(a, b, atol=1e-5)
    assert sum(p.numel() for p in narrow.parameters()) < sum(p.numel() for p in model.parameters())
