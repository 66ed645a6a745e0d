"""Shapes, order-K wiring, memory-efficient mode, statelessness and export."""

import copy

import pytest
import torch
from torch import nn

from dunet.models import ModelConfig, build_model
from dunet.models.blocks import DenseLayer

SMALL = dict(channels=16, growth=8, bottleneck=16, landmarks=5)


def small(**kw):
    return ModelConfig(**{**SMALL, **kw})


@pytest.mark.parametrize("size,levels", [(64, 4), (128, 4), (256, 4), (96, 3), (32, 2)])
def test_dunet_shapes(size, levels):
    model = build_model(small(units=3, order=1, input_size=size, levels=levels, loss_num=2)).eval()
    out = model(torch.rand(2, 3, size, size))
    assert len(out) == 2
    assert all(o.shape == (2, 5, size // 4, size // 4) for o in out)


@pytest.mark.parametrize("block", ["bottleneck", "hierarchical"])
def test_hourglass_shapes(block):
    model = build_model(small(arch="hourglass", units=2, input_size=64, block=block)).eval()
    out = model(torch.rand(1, 3, 64, 64))
    assert [o.shape for o in out] == [(1, 5, 16, 16)] * 2


def test_refine_returns_both_passes():
    model = build_model(small(units=2, input_size=64, refine=True)).eval()
    assert len(model(torch.rand(1, 3, 64, 64))) == 4


def test_bad_input_size_is_a_clear_error():
    with pytest.raises(ValueError, match="multiple of 64"):
        ModelConfig(input_size=100)


@pytest.mark.parametrize("order", [0, 1, 2, 5])
def test_order_k_wiring(order):
    """Each dense layer receives its own inputs plus exactly the new features that the same
    semantic position produced in the K preceding U-Nets (checked by tensor identity)."""
    units = 4
    model = build_model(small(units=units, order=order, input_size=64)).eval()
    calls = {}  # (position module, unit) -> (inputs list, output)

    def hook_for(pos, unit):
        def hook(module, args, output):
            calls[(pos, unit)] = (list(args[0]), output)
        return hook

    positions = list(model.down) + [model.bottom] + list(model.up)
    for pos_index, pos in enumerate(positions):
        for unit, layer in enumerate(pos.layers):
            layer.register_forward_hook(hook_for(pos_index, unit))
    model(torch.rand(1, 3, 64, 64))
    for pos_index, pos in enumerate(positions):
        own = 2 if pos in model.up else 1  # up blocks take [upsampled, skip]
        for unit in range(units):
            inputs, _ = calls[(pos_index, unit)]
            received = inputs[own:]
            expected = [calls[(pos_index, m)][1] for m in range(max(0, unit - order), unit)]
            assert len(received) == len(expected)
            assert all(a is b for a, b in zip(received, expected))


def _clone_pair(cfg):
    naive = build_model(cfg.replace(memory_efficient=False))
    efficient = build_model(cfg.replace(memory_efficient=True))
    efficient.load_state_dict(naive.state_dict())
    return naive.train(), efficient.train()


@pytest.mark.parametrize("extra", [dict(), dict(refine=True), dict(order=2, block="hierarchical")])
def test_memory_efficient_equals_naive(extra):
    naive, efficient = _clone_pair(small(**{"units": 3, "order": 1, "input_size": 64, **extra}))
    x = torch.rand(2, 3, 64, 64)
    outs = []
    for model in (naive, efficient):
        xi = x.clone().requires_grad_(True)
        out = model(xi)
        sum((o * torch.linspace(-1, 1, o.numel()).view_as(o)).sum() for o in out).backward()
        outs.append((out, xi.grad, {n: p.grad for n, p in model.named_parameters()}, model.state_dict()))
    (o1, g1, p1, s1), (o2, g2, p2, s2) = outs
    for a, b in zip(o1, o2):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(g1, g2, rtol=1e-4, atol=1e-6)
    for name in p1:
        torch.testing.assert_close(p1[name], p2[name], rtol=1e-4, atol=1e-5, msg=name)
    for name in s1:  # BN running statistics: updated once, identically
        torch.testing.assert_close(s1[name], s2[name], rtol=1e-5, atol=1e-6, msg=name)
    # Once per training forward (refinement runs the same U-Nets twice, in both modes alike).
    if not extra.get("refine"):
        assert all(int(v) == 1 for k, v in s2.items() if k.endswith("num_batches_tracked"))


def test_memory_efficient_saves_less_for_backward():
    naive, efficient = _clone_pair(small(units=3, order=1, input_size=64))
    saved = []
    for model in (naive, efficient):
        total = 0

        def pack(t):
            nonlocal total
            total += t.numel() * t.element_size()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            model(torch.rand(2, 3, 64, 64))
        saved.append(total)
    assert saved[1] < 0.8 * saved[0]


@pytest.mark.parametrize("cfg", [small(units=2, input_size=64), small(arch="hourglass", units=2, input_size=64)],
                         ids=["dunet", "hourglass"])
def test_stateless(cfg):
    model = build_model(cfg).train()
    x = torch.rand(2, 3, 64, 64)
    first = model(x)
    second = model(x)  # train mode: batch statistics, so identical despite running-stat updates
    for a, b in zip(first, second):
        assert torch.equal(a, b)
    model.eval()
    assert all(torch.equal(a, b) for a, b in zip(model(x), model(x)))
    # No features are kept on modules between calls.
    for module in model.modules():
        for name, value in vars(module).items():
            if name.startswith("_"):
                continue
            assert not isinstance(value, torch.Tensor), f"{type(module).__name__}.{name}"
            if isinstance(value, (list, tuple)):
                assert not any(isinstance(v, torch.Tensor) for v in value), f"{type(module).__name__}.{name}"


def test_parallel_copies_agree():
    model = build_model(small(units=2, input_size=64)).eval()
    twin = copy.deepcopy(model)
    x = torch.rand(3, 3, 64, 64)
    together = model(x)[-1]
    apart = torch.cat([twin(x[i : i + 1])[-1] for i in range(3)])
    torch.testing.assert_close(together, apart, rtol=1e-4, atol=1e-5)


EXPORT_CONFIGS = {
    "dunet-order0": small(units=2, order=0, input_size=64),
    "dunet-order2": small(units=3, order=2, input_size=64),
    "dunet-refine-efficient": small(units=2, input_size=64, refine=True, memory_efficient=True),
    "dunet-hierarchical": small(units=2, input_size=64, block="hierarchical"),
    "hourglass": small(arch="hourglass", units=2, input_size=64),
    "hourglass-hierarchical": small(arch="hourglass", units=2, input_size=64, block="hierarchical"),
}


@pytest.mark.parametrize("name", list(EXPORT_CONFIGS))
def test_torch_export(name):
    model = build_model(EXPORT_CONFIGS[name]).eval()
    x = torch.rand(2, 3, 64, 64)
    program = torch.export.export(model, (x,))
    exported = program.module()(x)
    for a, b in zip(model(x), exported):
        torch.testing.assert_close(a, b)


def test_dense_layers_are_the_only_growth():
    model = build_model(small(units=2, order=1, input_size=64))
    layers = [m for m in model.modules() if isinstance(m, DenseLayer)]
    assert len(layers) == 2 * 9  # 9 semantic positions x 2 U-Nets
    assert all(isinstance(l.expand.conv, nn.Conv2d) and l.expand.conv.out_channels == 8 for l in layers)
