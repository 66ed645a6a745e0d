"""Quantizers on hand-computed tensors: eq. (6), scaled k-bit codes, BW, BW-alpha, TW, TW-alpha, STE."""

import pytest
import torch

from dunet.quant import parse_quant
from dunet.quant.quantizers import (
    binary_alpha, dequantize, max_code, quantize_codes, quantize_error, quantize_input, quantize_linear,
    quantized_weight_values, sigma, ternary_alpha, ternary_threshold, weight_gradient,
)


def test_sigma_and_top_code():
    assert [sigma(k) for k in (2, 4, 8)] == [0.5, 0.125, 1 / 128]
    assert [max_code(k) for k in (2, 4, 8)] == [1, 7, 127]


@pytest.mark.parametrize("k,x,expected", [
    # sigma = 0.5: levels -0.5, 0, 0.5; clip at +-(1 - sigma)
    (2, [0.9, -0.3, 0.2, -1.0], [0.5, -0.5, 0.0, -0.5]),
    # sigma = 0.125: 0.3 -> 2 steps, -0.7 -> -6 steps (5.6 rounds to 6), 0.99 clips to 0.875
    (4, [0.3, -0.7, 0.99, 0.05], [0.25, -0.75, 0.875, 0.0]),
    # sigma = 1/128: 0.5 is on the grid, 0.01 -> 1 step, -1 clips to -127/128
    (8, [0.5, 0.01, -1.0, 0.003], [0.5, 1 / 128, -127 / 128, 0.0]),
])
def test_eq6_by_hand(k, x, expected):
    assert torch.equal(quantize_linear(torch.tensor(x), k), torch.tensor(expected))


@pytest.mark.parametrize("k,x,codes,step", [
    # max |x| = 1.0 -> step 1/1: only -1, 0, +1 (2 bits)
    (2, [1.0, -0.7, 0.4, -0.2], [1, -1, 0, 0], 1.0),
    # max |x| = 1.4 -> step 0.2
    (4, [1.4, -0.62, 0.33, 0.0, -1.06], [7, -3, 2, 0, -5], 0.2),
    # max |x| = 2.54 -> step 0.02
    (8, [-2.54, 1.0, 0.013, 0.007], [-127, 50, 1, 0], 0.02),
])
def test_scaled_codes_by_hand(k, x, codes, step):
    got_codes, got_step = quantize_codes(torch.tensor(x), k)
    assert got_codes.dtype == torch.int8
    assert got_codes.tolist() == codes
    assert got_step.item() == pytest.approx(step)


@pytest.mark.parametrize("k", [2, 3, 4, 6, 8])
def test_scaled_codes_are_eq6_on_the_scaled_tensor(k):
    x = torch.randn(1000) * 3
    codes, step = quantize_codes(x, k)
    scale = x.abs().max() / (1 - sigma(k))
    assert torch.allclose(dequantize(codes, step), scale * quantize_linear(x / scale, k), atol=1e-6)
    assert codes.abs().max().item() == max_code(k)  # the largest value sits on the top level
    assert len(codes.unique()) <= 2**k - 1


def test_input_scale_is_per_sample():
    x = torch.randn(3, 4, 5, 5)
    x[1] *= 100  # a loud sample must not coarsen the others
    codes, step = quantize_input(x, 8)
    assert step.shape == (3, 1, 1, 1)
    for i in range(3):
        one_codes, one_step = quantize_input(x[i:i + 1], 8)
        assert torch.equal(one_codes, codes[i:i + 1]) and torch.equal(one_step, step[i:i + 1])


def test_all_zero_input_quantizes_to_zero():
    codes, step = quantize_input(torch.zeros(2, 3, 4, 4), 4)
    assert not codes.any() and torch.isfinite(step).all()


def test_error_quantizer_keeps_small_gradients():
    """Relative to the layer's own max, tiny gradients survive; a fixed [-1, 1] grid zeroes them."""
    g = torch.tensor([3e-6, -1.2e-6, 0.4e-6, 0.0])
    q = quantize_error(g, 8)
    assert quantize_linear(g, 8).abs().sum() == 0  # eq. (6) without a scale loses everything
    step = 3e-6 / 127
    assert torch.allclose(q, torch.tensor([127, -51, 17, 0]) * step)  # 1.2/3*127 = 50.8, 0.4/3*127 = 16.9


def _filters(*rows):
    """Conv weights (out, in, 1, 1) with one output filter per row."""
    return torch.tensor(rows, dtype=torch.float32)[:, :, None, None]


def test_binary_weights_by_hand():
    w = _filters([0.3, -0.2, 0.0, 1.5, -2.0])
    assert quantized_weight_values(w, parse_quant("bw")).flatten().tolist() == [1, -1, 1, 1, -1]  # sign(0) = +1


def test_binary_alpha_by_hand():
    w = _filters([0.3, -0.2, 0.0, 1.5, -2.0], [0.1, 0.1, -0.1, -0.1, 0.6])
    q = quantized_weight_values(w, parse_quant("bw-alpha"))
    alpha = [0.8, 0.2]  # mean |w| per output filter
    expected = _filters([alpha[0] * s for s in (1, -1, 1, 1, -1)], [alpha[1] * s for s in (1, 1, -1, -1, 1)])
    assert torch.allclose(q, expected)


def test_ternary_by_hand():
    # mean |w| = 1.85 / 5 = 0.37 -> delta = 0.259
    w = _filters([0.9, -0.05, 0.3, -0.6, 0.0])
    assert quantized_weight_values(w, parse_quant("tw")).flatten().tolist() == [1, 0, 1, -1, 0]
    # alpha = mean |w| above delta = (0.9 + 0.3 + 0.6) / 3 = 0.6
    q = quantized_weight_values(w, parse_quant("tw-alpha")).flatten()
    assert torch.allclose(q, torch.tensor([0.6, 0.0, 0.6, -0.6, 0.0]))


@pytest.mark.parametrize("quant", ["bw", "tw"])
def test_ste_is_clipped_at_one(quant):
    w = _filters([0.5, -1.0, 1.5, -3.0, 0.0])
    assert weight_gradient(w, parse_quant(quant), torch.ones_like(w)).flatten().tolist() == [1, 1, 0, 0, 1]


def test_binary_alpha_gradient_is_xnor_nets():
    """d/dw of alpha * sign(w) with alpha = mean|w|: g * alpha * 1{|w| <= 1} + sign(w) / n * sum(g * sign(w))."""
    w = _filters([0.3, -0.2, 0.05, 1.5, -2.0])
    g = _filters([1.0, 2.0, -1.0, 0.5, 3.0])
    sign = torch.where(w >= 0, 1.0, -1.0)
    expected = g * w.abs().mean() * (w.abs() <= 1) + sign / 5 * (g * sign).sum()
    assert torch.allclose(weight_gradient(w, parse_quant("bw-alpha"), g), expected)


def _ste(w, levels):
    """`levels` forward; backward the clipped straight-through estimator, 1 where |w| <= 1."""
    clipped = w.clamp(-1, 1)
    return clipped + (levels - clipped).detach()


@pytest.mark.parametrize("quant", ["bw", "bw-alpha", "tw", "tw-alpha"])
def test_weight_gradient_matches_autograd_of_the_definition(quant):
    """The analytic gradient the layers use equals autograd through STE levels times alpha."""
    spec = parse_quant(quant)
    w = (torch.randn(4, 3, 3, 3) * 0.8).requires_grad_()
    g = torch.randn(4, 3, 3, 3)
    if spec.weights == "binary":
        q = _ste(w, torch.where(w >= 0, 1.0, -1.0)) * (binary_alpha(w) if spec.alpha else 1)
    else:
        delta = ternary_threshold(w)
        levels = (w > delta).float() - (w < -delta).float()
        q = _ste(w, levels) * (ternary_alpha(w, delta) if spec.alpha else 1)
    q.backward(g)
    assert torch.allclose(weight_gradient(w.detach(), spec, g), w.grad, atol=1e-6)
    assert torch.allclose(quantized_weight_values(w.detach(), spec), q.detach(), atol=1e-6)
