"""Heatmap codec: keypoints to Gaussian targets, and heatmaps back to sub-pixel keypoints.

Heatmaps are 1/stride of the input (stride 4). Positions map between the two with pixel centres
aligned: heatmap pixel j covers input pixels [stride*j, stride*(j+1)), so
    heatmap = (input + 0.5) / stride - 0.5,
which commutes with a horizontal flip (needed for flip-averaged testing). `HeatmapCodec` holds every
setting of both directions; `encode_gaussian` and `decode` below it work in heatmap pixels on batched
torch tensors (any leading dimensions); the encoder also takes numpy arrays and then returns numpy.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from dunet import DunetError

STRIDE = 4  # the network's heatmaps are 1/4 of its input (its stem: a stride-2 conv and a 2x2 pool)
# Paper: sigma 1 heatmap pixel at 64x64 heatmaps; other sizes scale it with the resolution.
SIGMA_AT_64 = 1.0
# A detection target is the disk where the Gaussian target is at least exp(-2): radius 2 sigma,
# the part-detection disk of Bulat & Tzimiropoulos, cut from the same encoded heatmap by the loss.
DISK_LEVEL = math.exp(-2.0)


@dataclass(frozen=True)
class HeatmapCodec:
    """Keypoints in input (crop) pixels <-> heatmaps of an `input_size` square input, encode and decode
    in one object (as mmpose's codecs). Built from a training config by `TrainConfig.codec`."""

    input_size: int = 256
    sigma: float = 0.0  # of the Gaussian targets, heatmap pixels; 0 = SIGMA_AT_64 scaled with the heatmap size
    refine: str = "taylor"  # sub-pixel step of `decode`: none, quarter or taylor
    blur: float = 0.0  # Gaussian blur (heatmap pixels) of heatmaps before decoding; 0 = none
    stride = STRIDE  # not a field: the network fixes it

    def __post_init__(self) -> None:
        if self.input_size % self.stride or self.input_size < 4 * self.stride:
            raise DunetError(f"input size must be a multiple of {self.stride} and at least {4 * self.stride}, "
                             f"got {self.input_size}")
        if not self.sigma:  # resolved once, so `codec.sigma` is the one the targets use
            object.__setattr__(self, "sigma", SIGMA_AT_64 * self.heatmap_size / 64.0)

    @property
    def heatmap_size(self) -> int:
        return self.input_size // self.stride

    def to_heatmap(self, points):
        """Input (crop) pixels to heatmap pixels; numpy or torch."""
        points = points if isinstance(points, (np.ndarray, Tensor)) else np.asarray(points, dtype=np.float64)
        return (points + 0.5) / self.stride - 0.5

    def to_input(self, points):
        """Heatmap pixels to input (crop) pixels; numpy or torch."""
        points = points if isinstance(points, (np.ndarray, Tensor)) else np.asarray(points, dtype=np.float64)
        return (points + 0.5) * self.stride - 0.5

    def encode(self, keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(K, H, W) float32 Gaussian targets of (K, 2) keypoints in input pixels, and the (K,) visibility
        left once keypoints off the heatmap are dropped. numpy: single-threaded, what data workers want."""
        on_map = self.to_heatmap(np.asarray(keypoints, dtype=np.float32))
        inside = ((on_map >= -0.5) & (on_map <= self.heatmap_size - 0.5)).all(axis=1)
        visible = visible * inside
        return encode_gaussian(on_map, visible, self.heatmap_size, self.sigma), visible

    def decode(self, heatmaps) -> tuple[Tensor, Tensor]:
        """Keypoints (..., K, 2) in input pixels and peak values (..., K) from (..., K, H, W) heatmaps."""
        coords, peak = decode(heatmaps, refine=self.refine, blur_sigma=self.blur)
        return self.to_input(coords), peak

    def decode_to_image(self, heatmaps, crop_to_image) -> tuple[Tensor, Tensor]:
        """Decode (B, K, H, W) heatmaps to (B, K, 2) original-image coordinates through each sample's
        (B, 2, 3) crop-to-image affine; also returns the (B, K) peak values."""
        crop, peak = self.decode(heatmaps)
        affine = torch.as_tensor(crop_to_image, dtype=torch.float32)
        image = crop @ affine[..., :2].transpose(-1, -2) + affine[..., None, :, 2]
        return image, peak


def _prepare(keypoints, visible, size: int | tuple[int, int]):
    """Float32 keypoints with non-finite ones unlabelled (moved to 0), a 0/1 mask, the pixel grids
    and the array module (numpy in, numpy out; torch in, torch out)."""
    height, width = (size, size) if isinstance(size, int) else size
    if isinstance(keypoints, np.ndarray):
        points = keypoints.astype(np.float32)
        mask = (np.asarray(visible) > 0).astype(np.float32)
        finite = np.isfinite(points).all(axis=-1)
        xs, ys = np.arange(width, dtype=np.float32), np.arange(height, dtype=np.float32)
        xp = np
    else:
        points = torch.as_tensor(keypoints, dtype=torch.float32)
        mask = (torch.as_tensor(visible, dtype=torch.float32, device=points.device) > 0).to(torch.float32)
        finite = torch.isfinite(points).all(dim=-1)
        xs = torch.arange(width, dtype=torch.float32, device=points.device)
        ys = torch.arange(height, dtype=torch.float32, device=points.device)
        xp = torch
    points = xp.where(finite[..., None], points, 0 * points[..., :1])
    return points, mask * finite, xs, ys, xp


def encode_gaussian(keypoints, visible, size: int | tuple[int, int], sigma: float):
    """(..., K, H, W) maps with an unnormalised Gaussian (peak 1 at the exact sub-pixel position) per
    labelled keypoint, zeros for unlabelled ones. `keypoints` (..., K, 2) are in heatmap pixels.
    numpy in gives numpy out (single-threaded, what data workers want); torch in gives torch out."""
    points, mask, xs, ys, xp = _prepare(keypoints, visible, size)
    # Separable: exp(-(dx^2 + dy^2) / 2s^2) = exp(-dx^2 / 2s^2) * exp(-dy^2 / 2s^2). Tails below
    # exp(-30) are set to 0: subnormal floats would make exp and the product ~100x slower.
    ax = -((xs - points[..., 0:1]) ** 2) / (2 * sigma**2)  # (..., K, W)
    ay = -((ys - points[..., 1:2]) ** 2) / (2 * sigma**2)  # (..., K, H)
    gx = xp.exp(xp.where(ax > -30, ax, -30.0)) * (ax > -30)
    gy = xp.exp(xp.where(ay > -30, ay, -30.0)) * (ay > -30) * mask[..., None]
    return gy[..., :, None] * gx[..., None, :]


@functools.lru_cache(maxsize=16)
def _blur_matrix(size: int, sigma: float) -> Tensor:
    """(size, size) matrix of a 1-D Gaussian blur with zero padding: row i holds the taps centred on pixel i.
    Blurring by matrix products (rows, then columns) is several times faster on a CPU than a one-channel
    convolution of each map."""
    radius = max(1, int(round(3 * sigma)))
    taps = torch.arange(-radius, radius + 1, dtype=torch.float64)
    pixels = torch.arange(size, dtype=torch.float64)
    distance = pixels[:, None] - pixels[None, :]
    weights = torch.exp(-(distance**2) / (2 * sigma**2)) * (distance.abs() <= radius)
    return (weights / torch.exp(-(taps**2) / (2 * sigma**2)).sum()).float()


def _blur(heatmaps: Tensor, sigma: float) -> Tensor:
    """Gaussian smoothing that keeps each map's maximum (DARK-style modulation of predictions). Zero
    padding: the image outside the map holds no evidence (replicating the edge would pull peaks to it)."""
    height, width = heatmaps.shape[-2:]
    rows = _blur_matrix(height, sigma).to(heatmaps)
    cols = _blur_matrix(width, sigma).to(heatmaps)
    peak = heatmaps.amax(dim=(-2, -1), keepdim=True)
    blurred = rows @ heatmaps @ cols.T
    return blurred * (peak / blurred.amax(dim=(-2, -1), keepdim=True).clamp_min(1e-12))


def decode(heatmaps, refine: str = "taylor", blur_sigma: float = 0.0) -> tuple[Tensor, Tensor]:
    """Keypoints (..., K, 2) in heatmap pixels and peak values (..., K) from (..., K, H, W) heatmaps.

    refine: "none" = integer argmax; "quarter" = argmax moved a quarter pixel towards the higher
    neighbour (Newell et al.); "taylor" = one Newton step on the log heatmap around the argmax
    (exact for a Gaussian peak; Zhang et al., DARK), falling back to "quarter" at borders or where
    the log heatmap is not a local maximum. `blur_sigma` > 0 smooths the maps first (useful for
    network predictions, whose peaks are not clean Gaussians)."""
    if refine not in ("none", "quarter", "taylor"):
        raise ValueError(f"refine must be none, quarter or taylor, got {refine!r}")
    maps = torch.as_tensor(heatmaps).detach().float()
    if blur_sigma > 0:
        maps = _blur(maps, blur_sigma)
    *lead, height, width = maps.shape
    flat = maps.reshape(-1, height, width)
    peak, index = flat.reshape(flat.shape[0], -1).max(dim=1)
    px, py = index % width, torch.div(index, width, rounding_mode="floor")
    coords = torch.stack([px, py], dim=1).to(torch.float32)
    if refine == "none":
        return coords.reshape(*lead, 2), peak.reshape(lead)

    # The 3x3 neighbourhood of each argmax, clamped at the borders: all that the sub-pixel step reads.
    steps = torch.arange(-1, 2, device=flat.device)
    ys = (py[:, None] + steps).clamp(0, height - 1)
    xs = (px[:, None] + steps).clamp(0, width - 1)
    patch = flat[torch.arange(flat.shape[0], device=flat.device)[:, None, None], ys[:, :, None], xs[:, None, :]]

    def at(dx: int, dy: int, values: Tensor) -> Tensor:
        return values[:, 1 + dy, 1 + dx]

    inner_x = (px > 0) & (px < width - 1)
    inner_y = (py > 0) & (py < height - 1)
    quarter = torch.stack([
        torch.where(inner_x, 0.25 * torch.sign(at(1, 0, patch) - at(-1, 0, patch)), torch.zeros_like(peak)),
        torch.where(inner_y, 0.25 * torch.sign(at(0, 1, patch) - at(0, -1, patch)), torch.zeros_like(peak)),
    ], dim=1)
    offset = quarter
    if refine == "taylor":
        # float64 and a tiny floor: the tails of narrow Gaussians must not be clipped.
        logs = torch.log(patch.double().clamp_min(1e-30))
        centre = at(0, 0, logs)
        gx = (at(1, 0, logs) - at(-1, 0, logs)) / 2
        gy = (at(0, 1, logs) - at(0, -1, logs)) / 2
        hxx = at(1, 0, logs) - 2 * centre + at(-1, 0, logs)
        hyy = at(0, 1, logs) - 2 * centre + at(0, -1, logs)
        hxy = (at(1, 1, logs) - at(-1, 1, logs) - at(1, -1, logs) + at(-1, -1, logs)) / 4
        det = hxx * hyy - hxy**2
        safe_det = torch.where(det.abs() > 1e-12, det, torch.ones_like(det))
        # offset = -H^-1 g
        ox = -(hyy * gx - hxy * gy) / safe_det
        oy = -(-hxy * gx + hxx * gy) / safe_det
        newton = torch.stack([ox, oy], dim=1).float()
        good = (
            inner_x & inner_y & (det > 1e-12) & (hxx < 0) & (peak > 0)
            & (newton.abs() <= 1.0).all(dim=1) & torch.isfinite(newton).all(dim=1)
        )
        offset = torch.where(good[:, None], newton, quarter)
    coords = coords + offset
    return coords.reshape(*lead, 2), peak.reshape(lead)
