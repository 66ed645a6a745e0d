"""Small models and real-looking inputs for the deployment tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from dunet.models import ModelConfig, build_model

SIZE = 64


def small_config(**changes) -> ModelConfig:
    base = dict(units=2, input_size=SIZE, channels=32, growth=8, bottleneck=16, levels=2, landmarks=5)
    base.update(changes)
    return ModelConfig(**base)


def randomize_batch_norm(model: nn.Module, seed: int = 0) -> nn.Module:
    """Distinct running statistics and affine parameters in every BN, so an exporter cannot merge
    layers that only look alike at initialisation, and eval-mode BN really does something."""
    gen = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            n = module.num_features
            module.running_mean.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
            module.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
            module.weight.data.copy_(torch.rand(n, generator=gen) + 0.5)
            module.bias.data.copy_(torch.rand(n, generator=gen) * 0.4 - 0.2)
    return model


def small_model(**changes) -> nn.Module:
    return randomize_batch_norm(build_model(small_config(**changes))).eval()


def argmax_landmarks(heatmaps: np.ndarray) -> np.ndarray:
    """(B, K, H, W) heatmaps -> (B, K, 2) integer x, y of each maximum."""
    b, k, _, w = heatmaps.shape
    index = heatmaps.reshape(b, k, -1).argmax(-1)
    return np.stack([index % w, index // w], -1)


def faces_300w(shared_data: Path, count: int, start: int = 0, size: int = SIZE) -> tuple[np.ndarray, np.ndarray]:
    """`count` real 300-W faces resized to size x size, (N, 3, S, S) in [0, 1], and their 68 landmarks
    in the resized pixels (N, 68, 2). The 300-W images here are already cropped around the face."""
    from dunet.data.readers import parse_pts

    files = sorted((shared_data / "300w").glob("*.jpg"))[start:start + count]
    images, points = [], []
    for path in files:
        image = Image.open(path).convert("RGB")
        scale = np.array([size / image.width, size / image.height])
        images.append(np.asarray(image.resize((size, size), Image.BILINEAR), np.float32).transpose(2, 0, 1) / 255)
        points.append((parse_pts(path.with_suffix(".pts"))[:, :2] - 0.5) * scale - 0.5)  # 1-based -> 0-based
    return np.stack(images), np.stack(points).astype(np.float32)


def gaussian_heatmaps(points: np.ndarray, size: int, stride: int = 4, sigma: float = 1.0) -> np.ndarray:
    """(N, K, 2) input-pixel points -> (N, K, size, size) Gaussian heatmaps at 1/stride resolution."""
    centres = (points + 0.5) / stride - 0.5
    grid = np.arange(size, dtype=np.float32)
    gx = np.exp(-((grid[None, None, :] - centres[..., 0:1]) ** 2) / (2 * sigma**2))
    gy = np.exp(-((grid[None, None, :] - centres[..., 1:2]) ** 2) / (2 * sigma**2))
    return (gy[..., :, None] * gx[..., None, :]).astype(np.float32)


def train_briefly(model: nn.Module, images: np.ndarray, targets: np.ndarray, steps: int, lr: float = 2e-3) -> nn.Module:
    """A few full-batch Adam steps on heatmap MSE: enough for peaked heatmaps, so that comparing
    argmax landmarks of two runtimes means something (a random model's heatmaps are nearly flat)."""
    x, y = torch.from_numpy(images), torch.from_numpy(targets)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        optimizer.zero_grad()
        loss = sum(nn.functional.mse_loss(h, y) for h in model(x))
        loss.backward()
        optimizer.step()
    return model.eval()
