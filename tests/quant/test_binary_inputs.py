"""Binary inputs, I = 1 in the spec (XNOR-Net, Bulat & Tzimiropoulos): every quantized convolution sees
sign(x), with the straight-through gradient zeroed where |x| >= 1, and its unit is BN -> sign -> conv.
The spec forms are in test_spec.py."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dunet.models import ModelConfig, build_model
from dunet.models.blocks import BnReluConv
from dunet.quant import QConv2d, bn_relu_conv, conv2d, parse_quant, unit_activation
from dunet.quant.quantizers import quantize_error, weight_gradient

SMALL = dict(channels=16, growth=8, bottleneck=16, landmarks=5, input_size=64, units=2)


def signs(x: torch.Tensor) -> torch.Tensor:
    """sign(x) with sign(0) = +1, written out independently of the code under test."""
    return (x >= 0).float() * 2 - 1


# ---------------------------------------------------------------------------------------------
# the quantized convolution


def inputs_with_edges() -> torch.Tensor:
    """Random inputs plus the edge cases: 0 (sign +1), +-1 (the gradient is zeroed) and just inside."""
    x = torch.randn(2, 6, 7, 7) * 1.5
    x[0, 0, 0, :5] = torch.tensor([0.0, 1.0, -1.0, 0.999, -0.999])
    return x


def test_sign_input_conv_forward_is_conv_of_signs():
    conv = conv2d(6, 4, 3, bias=True, quant=parse_quant("bw-alpha-1/1/32"))
    x = inputs_with_edges()
    expected = F.conv2d(signs(x), conv.quantized_weight(), conv.bias, padding=1)
    assert torch.equal(conv(x), expected)
    with torch.no_grad():  # inference takes its own path (nothing kept for backward)
        assert torch.equal(conv(x), expected)
    assert not torch.equal(expected, F.conv2d(x, conv.quantized_weight(), conv.bias, padding=1))


@pytest.mark.parametrize("quant", ["bw-alpha-1/1/32", "1/1/8"])
def test_straight_through_gradient_is_zeroed_where_abs_x_reaches_one(quant):
    """d out / d x is d out / d sign(x) where |x| < 1 and 0 elsewhere (then on the G-bit grid, if any);
    the weight gradient is computed from the signs."""
    conv = conv2d(6, 4, 3, quant=parse_quant(quant))
    x = inputs_with_edges().requires_grad_()
    g = torch.randn(2, 4, 7, 7)
    conv(x).backward(g)
    bits = conv.spec.grad_bits
    received = quantize_error(g, bits)
    through_sign = F.conv_transpose2d(received, conv.quantized_weight(), padding=1)
    assert torch.allclose(x.grad, quantize_error(through_sign * (x.detach().abs() < 1), bits), atol=1e-6)
    assert x.grad[0, 0, 0, :5].ne(0).tolist() == [True, False, False, True, True]  # zeroed at |x| = 1
    assert torch.all(x.grad[x.detach().abs() >= 1] == 0) and (x.detach().abs() >= 1).float().mean() > 0.3
    grad_of_levels = torch.nn.grad.conv2d_weight(signs(x.detach()), conv.weight.shape, received, padding=1)
    expected = quantize_error(weight_gradient(conv.weight.detach(), conv.spec, grad_of_levels), bits)
    assert torch.allclose(conv.weight.grad, expected, atol=1e-5)


def saved_by_dtype(fn) -> dict:
    """Elements autograd saves while running fn(), by dtype, parameters left out."""
    saved: dict = {}

    def pack(t):
        if not isinstance(t, nn.Parameter):
            saved[t.dtype] = saved.get(t.dtype, 0) + t.numel()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return saved


def test_sign_input_conv_keeps_two_bits_per_input_element():
    conv = conv2d(16, 8, 3, quant=parse_quant("1/1/32"))
    x = torch.randn(4, 16, 12, 12, requires_grad=True)
    assert saved_by_dtype(lambda: conv(x)) == {torch.uint8: 2 * x.numel() // 8}  # the signs and the mask


# ---------------------------------------------------------------------------------------------
# the pre-activation unit: BN -> sign -> conv


def make_unit(quant="bw-alpha-1/1/32", cin=12, cout=7):
    norm = nn.BatchNorm2d(cin)
    conv = conv2d(cin, cout, 3, quant=parse_quant(quant))
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.5, 0.5)
    return norm, conv


def test_the_unit_asks_the_spec_for_its_activation():
    assert unit_activation(conv2d(4, 4, 1)) is F.relu
    assert unit_activation(conv2d(4, 4, 1, quant=parse_quant("8/1/8"))) is F.relu
    x = torch.randn(5)
    assert torch.equal(unit_activation(conv2d(4, 4, 1, quant=parse_quant("1/1/32")))(x), x)


def test_eval_unit_is_bn_sign_conv_not_relu():
    norm, conv = make_unit()
    norm.running_mean.uniform_(-1, 1)
    norm.running_var.uniform_(0.5, 2)
    norm.eval()
    x = torch.randn(2, 12, 5, 5)
    out = bn_relu_conv(x, norm, conv)
    with torch.no_grad():
        expected = F.conv2d(signs(norm(x)), conv.quantized_weight(), padding=1)
        after_relu = F.conv2d(signs(F.relu(norm(x))), conv.quantized_weight(), padding=1)
    assert torch.allclose(out, expected, atol=1e-5)
    assert not torch.allclose(out, after_relu, atol=1e-2)


def test_fused_training_unit_matches_bn_sign_conv_and_keeps_bits():
    """Training BN -> sign -> QConv as one Function: the forward of BN (batch statistics), sign and
    conv run op by op; the weight gradient exactly (signs are kept exactly), the input's and gamma's
    up to the 8-bit storage of the normalised input; the running statistics once."""
    norm, conv = make_unit()
    ref_norm = nn.BatchNorm2d(12)
    ref_norm.load_state_dict(norm.state_dict())
    x = (torch.randn(3, 12, 9, 9) * 2 + 1).requires_grad_()
    g = torch.randn(3, 7, 9, 9)
    out = bn_relu_conv(x, norm, conv)
    out.backward(g)
    fused = [t.grad.clone() for t in (x, norm.weight, norm.bias, conv.weight)]
    x.grad, conv.weight.grad = None, None
    expected = conv(ref_norm(x))  # QConv2d alone takes the sign: floats kept for BN
    expected.backward(g)
    assert torch.allclose(out, expected, atol=1e-5)
    reference = [x.grad, ref_norm.weight.grad, ref_norm.bias.grad, conv.weight.grad]
    tolerance = {"x": 0.01, "gamma": 0.05, "beta": 1e-5, "weight": 1e-6}
    for (name, tol), got, want in zip(tolerance.items(), fused, reference):
        assert (got - want).norm() / want.norm() < tol, name
    assert torch.allclose(norm.running_mean, ref_norm.running_mean)
    assert norm.num_batches_tracked.item() == 1
    saved = saved_by_dtype(lambda: bn_relu_conv(x, norm, conv))
    assert saved[torch.int8] == x.numel()  # 8-bit codes of the normalised input, for the BN backward
    assert saved[torch.uint8] == 2 * -(-x.numel() // 8)  # the signs and the straight-through mask
    assert saved[torch.float32] <= 3 + 2 * 12  # per-sample step, 1/std and gamma per channel


def test_bn_relu_conv_module_uses_sign_in_training():
    unit = BnReluConv(6, 4, 3, quant=parse_quant("1/1/32")).train()
    x = torch.randn(2, 6, 5, 5)
    normed = F.batch_norm(x, None, None, unit.norm.weight, unit.norm.bias, True)
    expected = F.conv2d(signs(normed), unit.conv.quantized_weight(), padding=1)
    assert torch.allclose(unit(x), expected, atol=1e-5)


def quantized_conv_inputs(model: nn.Module, images: torch.Tensor) -> dict[str, torch.Tensor]:
    """The input of every QConv2d module call, in eval mode (training runs the units as fused Functions)
    with the running statistics of the batch, so that eval-mode BN centres its output as training's does."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.momentum = None  # cumulative average: after one batch, that batch's statistics
    with torch.no_grad():
        model.train()(images)
    inputs = {}

    def keep(name):
        def hook(module, args):
            inputs.setdefault(name, args[0].detach())
        return hook

    hooks = [m.register_forward_pre_hook(keep(name)) for name, m in model.named_modules() if isinstance(m, QConv2d)]
    with torch.no_grad():
        model.eval()(images)
    for hook in hooks:
        hook.remove()
    return inputs


@pytest.mark.parametrize("arch,block,convs", [
    ("dunet", "bottleneck", ""),  # every quantized conv
    ("dunet", "hierarchical", ""),
    ("hourglass", "bottleneck", ("merge_features.", "stem.3.shortcut")),
    ("hourglass", "hierarchical", ("merge_features.",)),
])
def test_no_quantized_conv_takes_the_sign_of_a_relu_output(arch, block, convs):
    """With I = 1 the quantized convs get signed inputs (the sign of a ReLU output would be +1
    everywhere): DU-Net's units and the hourglass's merge conv and plain stem shortcut read the BN
    output. With 8-bit inputs the same convs read ReLU outputs, so the check can fail."""
    cfg = ModelConfig(**SMALL, arch=arch, block=block, quant="bw-alpha-1/1/32")
    # Eval-mode BN divides by the unbiased variance, training's by the biased one: the signs of values near
    # zero can differ between the two passes, and a 1x1 or 2x2 map of two images is then no longer centred
    # by the statistics of the other pass. Eight images at 128 px leave at least 2x2 x 8 values per channel.
    images = torch.rand(8, 3, 128, 128, generator=torch.Generator().manual_seed(0))
    for quant, signed in (("bw-alpha-1/1/32", True), ("8/1/8", False)):
        inputs = quantized_conv_inputs(build_model(cfg.replace(quant=quant)), images)
        checked = {name: x for name, x in inputs.items() if name.startswith(convs)}
        assert checked
        assert all(bool((x < 0).any()) == signed for x in checked.values()), quant


@pytest.mark.parametrize("block", ["bottleneck", "hierarchical"])
def test_every_sign_input_conv_of_the_hourglass_reads_a_bn(block):
    """BN -> sign -> conv everywhere: a conv reading the residual stream or the heatmaps directly would take
    the sign of an uncentred tensor, nearly constant once trained (a fully binary HG(2) stayed at ~100 % NME).
    The merge conv reads a BN output in forward (the test above)."""
    model = build_model(ModelConfig(**SMALL, arch="hourglass", block=block, quant="bw-alpha-1/1/32"))
    modules = dict(model.named_modules())
    convs = [name for name, m in modules.items() if isinstance(m, QConv2d)]
    assert any(name.startswith("merge_heatmaps.") for name in convs)
    for name in convs:
        parent = modules[name.rsplit(".", 1)[0]]
        in_unit = isinstance(getattr(parent, "norm", None), nn.BatchNorm2d) and parent.conv is modules[name]
        assert in_unit or name.startswith("merge_features."), name
    unquantized = build_model(ModelConfig(**SMALL, arch="hourglass", block=block, quant="bw-alpha"))
    assert not any(name.startswith("merge_heatmaps.") and name.endswith(".norm") for name, _ in unquantized.named_modules())


# ---------------------------------------------------------------------------------------------
# whole models: training (packing round trips: tests/quant/test_packing.py)


@pytest.mark.parametrize("memory_efficient", [False, True])
def test_a_few_steps_lower_the_loss(memory_efficient):
    """RMSprop on one fixed batch of Gaussian-blob heatmaps: the fully binary DU-Net learns."""
    torch.manual_seed(0)
    cfg = ModelConfig(channels=16, growth=8, bottleneck=16, landmarks=3, input_size=64, units=2,
                      quant="bw-alpha-1/1/32", memory_efficient=memory_efficient)
    model = build_model(cfg).train()
    images = torch.rand(4, 3, 64, 64)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centres = torch.randint(3, 13, (4, 3, 2)).float()
    targets = torch.exp(-((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / 2)
    optimizer = torch.optim.RMSprop(model.parameters(), lr=2.5e-3)
    losses = []
    for _ in range(12):
        optimizer.zero_grad()
        loss = sum(F.mse_loss(h, targets) for h in model(images))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert min(losses[-3:]) < 0.3 * losses[0], losses
    counts = {m.num_batches_tracked.item() for m in model.modules() if isinstance(m, nn.BatchNorm2d)}
    assert counts == {12}  # running statistics moved once per step
