"""QConv2d and the fused BN-ReLU-QConv unit: forward values, gradients on the k-bit grid (hooks),
what autograd keeps (saved_tensors_hooks), and which layers of each model are quantized."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dunet.models import ModelConfig, build_model
from dunet.quant import QConv2d, bn_relu_conv, conv2d, parse_quant
from dunet.quant.quantizers import dequantize, max_code, quantize_error, quantize_input

SMALL = dict(channels=16, growth=8, bottleneck=16, landmarks=5, input_size=64)


def on_grid(t: torch.Tensor, k: int) -> bool:
    """True if `t` is integer multiples of max|t| / (2^(k-1) - 1): the k-bit grid of its own scale."""
    step = t.abs().max() / max_code(k)
    codes = t / step
    return bool(torch.allclose(codes, codes.round(), atol=1e-3)) and len(t.unique()) <= 2**k - 1


def test_factory_returns_plain_conv_for_none():
    assert type(conv2d(4, 8, 3)) is nn.Conv2d
    conv = conv2d(4, 8, 3, quant=parse_quant("bw-alpha-8/1/8"))
    assert isinstance(conv, QConv2d) and conv.spec == parse_quant("bw-alpha-8/1/8") and conv.padding == (1, 1)
    assert set(conv.state_dict()) == {"weight"}  # same keys as nn.Conv2d


@pytest.mark.parametrize("quant", ["bw", "tw-alpha", "8/1/8", "bw-alpha-4/1/4"])
def test_qconv_forward_is_conv_of_quantized_tensors(quant):
    conv = conv2d(6, 4, 3, bias=True, quant=parse_quant(quant))
    x = torch.randn(2, 6, 7, 7)
    spec = conv.spec
    x_used = dequantize(*quantize_input(x, spec.input_bits)) if spec.input_bits else x
    expected = F.conv2d(x_used, conv.quantized_weight(), conv.bias, padding=1)
    assert torch.equal(conv(x), expected)


@pytest.mark.parametrize("bits", [2, 4, 6, 8])
def test_qconv_gradients_lie_on_the_k_bit_grid(bits):
    """The error sent back to the input (seen by a hook on the input) and the weight gradient are k-bit."""
    conv = conv2d(5, 3, 3, quant=parse_quant(f"{bits}/1/{bits}"))
    x = torch.randn(2, 5, 8, 8, requires_grad=True)
    grads = {}
    x.register_hook(lambda g: grads.setdefault("input", g))
    out = conv(x)
    (out * torch.randn_like(out)).sum().backward()
    assert on_grid(grads["input"], bits)
    assert on_grid(conv.weight.grad, bits)
    assert not on_grid(torch.randn(100), bits)  # the check itself can fail


def test_qconv_quantizes_the_error_it_receives_and_the_one_it_sends():
    conv = conv2d(3, 2, 3, quant=parse_quant("32/32/4"))  # float weights and inputs, 4-bit gradients
    x = torch.randn(1, 3, 5, 5, requires_grad=True)
    g = torch.randn(1, 2, 5, 5)
    conv(x).backward(g)
    received = quantize_error(g, 4)
    sent = F.conv_transpose2d(received, conv.weight.detach(), padding=1)
    assert torch.allclose(x.grad, quantize_error(sent, 4))
    assert not torch.allclose(x.grad, F.conv_transpose2d(g, conv.weight.detach(), padding=1), atol=1e-3)


def test_qconv_computes_the_weight_gradient_from_the_stored_input():
    conv = conv2d(3, 2, 1, quant=parse_quant("4/32/32"))  # k-bit inputs, float weights and gradients
    x = torch.randn(1, 3, 4, 4, requires_grad=True)
    g = torch.randn(1, 2, 4, 4)
    conv(x).backward(g)
    x_used = dequantize(*quantize_input(x.detach(), 4))
    assert torch.allclose(x.grad, F.conv_transpose2d(g, conv.weight.detach()))
    assert torch.allclose(conv.weight.grad, torch.einsum("bohw,bihw->oi", g, x_used)[:, :, None, None], atol=1e-5)


def saved_tensors(fn):
    """(dtype, numel) of every tensor autograd saves while running fn()."""
    saved = []

    def pack(t):
        saved.append((t.dtype, t.numel(), t.requires_grad))
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = fn()
    return saved, out


def test_qconv_with_input_bits_saves_int8_codes_not_floats():
    conv = conv2d(16, 8, 3, quant=parse_quant("8/1/8"))
    x = torch.randn(4, 16, 12, 12, requires_grad=True)
    saved, _ = saved_tensors(lambda: conv(x))
    big = [(dtype, n) for dtype, n, _ in saved if n >= x.numel()]
    assert big == [(torch.int8, x.numel())]
    floats = [n for dtype, n, is_param in saved if dtype.is_floating_point and not is_param]
    assert sum(floats) <= 4  # the per-sample step


def make_unit(cin=12, cout=7, k=3, quant="8/1/8"):
    norm = nn.BatchNorm2d(cin)
    conv = conv2d(cin, cout, k, quant=parse_quant(quant))
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm, conv


def test_fused_unit_saves_int8_codes_and_mask_bits():
    norm, conv = make_unit(cin=16, quant="8/1/8")
    x = torch.randn(4, 16, 12, 12, requires_grad=True)
    saved, _ = saved_tensors(lambda: bn_relu_conv(x, norm, conv))
    by_dtype = {}
    for dtype, n, is_param in saved:
        if not is_param:
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    assert by_dtype[torch.int8] == x.numel()  # codes of the normalised input
    assert by_dtype[torch.uint8] == x.numel() // 8  # the ReLU mask, one bit per element
    assert by_dtype[torch.float32] <= 2 * 4 + 16  # per-sample steps and 1/std per channel


@pytest.mark.parametrize("quant", ["8/32/32", "bw-alpha-8/1/32", "6/1/32"])
def test_fused_unit_matches_unfused_autograd(quant):
    """Same forward as BN -> ReLU -> QConv run op by op (up to float rounding in BN); gradients equal
    up to the k-bit storage of the normalised input (exact ReLU mask, so beta's gradient is exact)."""
    norm, conv = make_unit(quant=quant)
    ref_norm = nn.BatchNorm2d(12)
    ref_norm.load_state_dict(norm.state_dict())
    x = (torch.randn(3, 12, 9, 9) * 2 + 1).requires_grad_()
    g = torch.randn(3, 7, 9, 9)
    bn_relu_conv(x, norm, conv).backward(g)
    fused = [t.grad.clone() for t in (x, norm.weight, norm.bias, conv.weight)]
    x.grad, conv.weight.grad = None, None
    conv(F.relu(ref_norm(x))).backward(g)  # QConv2d alone: floats for BN and ReLU
    reference = [x.grad, ref_norm.weight.grad, ref_norm.bias.grad, conv.weight.grad]
    tolerance = {"x": 0.01, "gamma": 0.05, "beta": 1e-5, "weight": 0.1}
    for (name, tol), got, want in zip(tolerance.items(), fused, reference):
        assert (got - want).norm() / want.norm() < tol, name
    assert torch.allclose(norm.running_mean, ref_norm.running_mean)
    assert torch.allclose(norm.running_var, ref_norm.running_var)
    assert norm.num_batches_tracked.item() == ref_norm.num_batches_tracked.item() == 1


@pytest.mark.parametrize("bits", [2, 4, 8])
def test_fused_unit_error_signal_lies_on_the_grid(bits):
    norm, conv = make_unit(quant=f"{bits}/1/{bits}")
    x = torch.randn(2, 12, 6, 6, requires_grad=True)
    grads = {}
    x.register_hook(lambda g: grads.setdefault("x", g))
    out = bn_relu_conv(x, norm, conv)
    (out * torch.randn_like(out)).sum().backward()
    assert on_grid(grads["x"], bits)
    assert on_grid(conv.weight.grad, bits)


def test_eval_folds_batch_norm():
    norm, conv = make_unit(quant="bw-alpha")
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    norm.eval()
    x = torch.randn(2, 12, 5, 5)
    assert torch.allclose(bn_relu_conv(x, norm, conv), conv(F.relu(norm(x))), atol=1e-5)


def conv_types(model):
    return [type(m) for m in model.modules() if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize("arch,block", [("dunet", "bottleneck"), ("dunet", "hierarchical"),
                                        ("hourglass", "bottleneck"), ("hourglass", "hierarchical")])
def test_first_and_last_layers_stay_full_precision(arch, block):
    cfg = ModelConfig(**SMALL, arch=arch, block=block, units=3, quant="bw-alpha-8/1/8")
    model = build_model(cfg)
    first = model.stem[0]
    last = [head.conv if arch == "dunet" else head for head in model.heads]
    assert type(first) is nn.Conv2d and all(type(c) is nn.Conv2d for c in last)
    types = conv_types(model)
    assert types.count(QConv2d) == len(types) - 1 - len(last)  # every other conv, 1x1 adapters included
    # untouched: the same layers as the full-precision model, with the same parameters
    plain = build_model(cfg.replace(quant="none"))
    plain_types = conv_types(plain)
    assert len(plain_types) == len(types) and QConv2d not in plain_types
    assert plain.stem[0].weight.shape == first.weight.shape
