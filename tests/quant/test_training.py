"""Quantized models in training: what autograd keeps, running statistics, and that they learn."""

import pytest
import torch
import torch.nn.functional as F

from dunet.models import ModelConfig, build_model
from dunet.quant import QConv2d
from dunet.models.efficiency import saved_tensor_bytes, training_memory_ratio

SMALL = dict(channels=32, growth=8, bottleneck=32, landmarks=5, input_size=64, units=2)


def batch(cfg, n=2):
    return torch.rand(n, 3, cfg.input_size, cfg.input_size), torch.rand(n, cfg.landmarks, cfg.heatmap_size,
                                                                       cfg.heatmap_size)


@pytest.mark.parametrize("block", ["bottleneck", "hierarchical"])
def test_qig_dunet_keeps_int8_codes_instead_of_floats(block):
    """With k-bit inputs every BN-ReLU-QConv unit keeps int8 codes; the floats left are those of the
    full-precision first and last layers and of max-pooling."""
    cfg = ModelConfig(**SMALL, block=block)
    images, targets = batch(cfg)
    full = saved_tensor_bytes(build_model(cfg), images, targets)
    quantized = saved_tensor_bytes(build_model(cfg.replace(quant="8/1/8")), images, targets)
    assert "int8" not in full["by_dtype"]
    assert quantized["by_dtype"]["int8"] > 0
    assert quantized["total"] < 0.45 * full["total"]
    assert quantized["by_dtype"]["float32"] < 0.3 * full["by_dtype"]["float32"]


def test_weight_only_quantization_keeps_what_full_precision_keeps():
    cfg = ModelConfig(**SMALL, quant="bw-alpha")
    assert training_memory_ratio(cfg) == pytest.approx(1.0, abs=0.01)


def test_memory_efficient_qig_updates_running_stats_once():
    cfg = ModelConfig(**SMALL, quant="8/1/8", memory_efficient=True)
    model = build_model(cfg).train()
    images, targets = batch(cfg)
    sum(F.mse_loss(h, targets) for h in model(images)).backward()
    counts = {m.num_batches_tracked.item() for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)}
    assert counts == {1}


@pytest.mark.parametrize("quant", ["bw-alpha", "8/1/8", "bw-alpha-1/1/32"])
def test_trains_under_bf16_autocast_and_channels_last(quant):
    """The training recipes' settings: convolutions in bfloat16, NHWC tensors."""
    cfg = ModelConfig(**SMALL, quant=quant)
    model = build_model(cfg).train().to(memory_format=torch.channels_last)
    images, targets = batch(cfg)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = sum(F.mse_loss(h.float(), targets) for h in model(images.contiguous(memory_format=torch.channels_last)))
    loss.backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and g.dtype == torch.float32 and torch.isfinite(g).all() for g in grads)


def fit_fixed_batch(quant: str, train_quantized_convs: bool = True, steps: int = 40) -> list[float]:
    """RMSprop on one fixed batch of Gaussian-blob heatmaps; the losses, step by step."""
    torch.manual_seed(0)
    cfg = ModelConfig(channels=16, growth=8, bottleneck=16, landmarks=3, input_size=64, units=2, quant=quant)
    model = build_model(cfg).train()
    images = torch.rand(4, 3, 64, 64)
    ys, xs = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    centres = torch.randint(3, 13, (4, 3, 2)).float()
    targets = torch.exp(-((xs - centres[..., 0, None, None]) ** 2 + (ys - centres[..., 1, None, None]) ** 2) / 2)
    params = [p for m in model.modules() if train_quantized_convs or not isinstance(m, QConv2d)
              for p in m.parameters(recurse=False)]
    optimizer = torch.optim.RMSprop(params, lr=2.5e-3)
    losses = []
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(F.mse_loss(h, targets) for h in model(images))
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


@pytest.mark.slow
def test_tiny_bw_alpha_dunet_learns():
    """40 steps fitting one fixed batch: the loss falls well below where it started."""
    losses = fit_fixed_batch("bw-alpha")
    assert min(losses[-5:]) < 0.15 * losses[0], losses


@pytest.mark.slow
def test_tiny_qig_dunet_learns_in_its_quantized_layers():
    """8/1/8: the loss falls well below its start, and far below what training only the
    full-precision first and last layers and the BN parameters (quantized conv weights frozen) reaches."""
    losses = fit_fixed_batch("8/1/8")
    assert min(losses[-5:]) < 0.15 * losses[0], losses
    frozen = min(fit_fixed_batch("8/1/8", train_quantized_convs=False)[-5:])
    assert min(losses[-5:]) < 0.7 * frozen, (losses[-5:], frozen)
