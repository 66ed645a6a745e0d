"""Heatmap codec: keypoints to Gaussian targets, and heatmaps back to sub-pixel keypoints.

Heatmaps are 1/stride of the input (stride 4). Positions map between the two with pixel centres
aligned: heatmap pixel j covers input pixels [stride*j, stride*(j+1)), so
    heatmap = (input + 0.5) / stride - 0.5,
which commutes with a horizontal flip (needed for flip-averaged testing). `HeatmapCodec` holds every
setting of both directions; `encode_gaussian` and `decode` below it work in heatmap pixels on batched
arrays (any leading dimensions). The encoder returns what it is given (torch or numpy); the decoder takes
either and returns numpy arrays. PyTorch is never imported here: inference runs without it.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

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
        return (_array(points) + 0.5) / self.stride - 0.5

    def to_input(self, points):
        """Heatmap pixels to input (crop) pixels; numpy or torch."""
        return (_array(points) + 0.5) * self.stride - 0.5

    def encode(self, keypoints, visible):
        """(..., K, H, W) float32 Gaussian targets of (..., K, 2) keypoints in input pixels, and the (..., K)
        visibility left once keypoints off the heatmap are dropped. numpy in: single-threaded, what data workers
        want; torch in: batched, on the tensors' device (tools/gpu_train.py makes its targets on the GPU)."""
        if not _is_torch(keypoints):
            keypoints = np.asarray(keypoints, dtype=np.float32)
        on_map = self.to_heatmap(keypoints)
        inside = ((on_map >= -0.5) & (on_map <= self.heatmap_size - 0.5)).all(-1)
        visible = visible * inside
        return encode_gaussian(on_map, visible, self.heatmap_size, self.sigma), visible

    def decode(self, heatmaps) -> tuple[np.ndarray, np.ndarray]:
        """Keypoints (..., K, 2) in input pixels and peak values (..., K) from (..., K, H, W) heatmaps."""
        coords, peak = decode(heatmaps, refine=self.refine, blur_sigma=self.blur)
        return self.to_input(coords), peak

    def decode_to_image(self, heatmaps, crop_to_image) -> tuple[np.ndarray, np.ndarray]:
        """Decode (B, K, H, W) heatmaps to (B, K, 2) original-image coordinates through each sample's
        (B, 2, 3) crop-to-image affine; also returns the (B, K) peak values."""
        crop, peak = self.decode(heatmaps)
        affine = np.asarray(crop_to_image, dtype=np.float32)
        image = crop @ np.swapaxes(affine[..., :2], -1, -2) + affine[..., None, :, 2]
        return image.astype(np.float32), peak


def _is_torch(value) -> bool:
    return type(value).__module__.startswith("torch")


def _array(points):
    """numpy and torch arrays as they are (both do the arithmetic of the pixel conventions); anything else as numpy."""
    return points if isinstance(points, np.ndarray) or _is_torch(points) else np.asarray(points, dtype=np.float64)


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
        import torch

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
def _gaussian_taps(sigma: float) -> np.ndarray:
    """(2r + 1,) float32 taps of a 1-D Gaussian with r = round(3 sigma) (at least 1), summing to 1."""
    radius = max(1, int(round(3 * sigma)))
    taps = np.exp(-np.arange(-radius, radius + 1, dtype=np.float64) ** 2 / (2 * sigma**2))
    return (taps / taps.sum()).astype(np.float32)


@functools.lru_cache(maxsize=16)
def _blur_matrix(length: int, sigma: float) -> np.ndarray:
    """(length, length) float32: multiplying a map's rows by it convolves them with `_gaussian_taps`, zero outside
    the map (the image outside holds no evidence; replicating the edge would pull peaks to it)."""
    taps = _gaussian_taps(sigma)
    radius = len(taps) // 2
    matrix = np.zeros((length, length), np.float32)
    for offset, tap in enumerate(taps):
        matrix += np.eye(length, k=offset - radius, dtype=np.float32) * tap
    return matrix


def _blur(heatmaps: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian smoothing of (N, H, W) float32 maps (DARK-style modulation of predictions), as two matrix products
    (rows, then columns): as fast as a separable filter on maps this small, and plain numpy. One product per map:
    each (up to 64 x 64 x 64 multiply-adds) runs on the calling thread, where one product over all N maps would go
    to OpenBLAS's worker threads, whose spinning took the network's core (a pose photo pinned to one core: 68
    instead of 28 ms)."""
    along_x = np.matmul(heatmaps, _blur_matrix(heatmaps.shape[2], sigma))
    return np.matmul(_blur_matrix(heatmaps.shape[1], sigma), along_x)


# The sub-pixel step reads the 3x3 neighbourhood of a peak, flattened row by row (dy, dx in -1..1): these weights
# turn it into the central differences x, y (columns 0, 1) and the second differences xx, yy, xy (2, 3, 4).
_NEIGHBOURS = np.array([(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
_DIFFERENCES = np.array([
    [dx / 2 * (dy == 0), dy / 2 * (dx == 0), (3 * dx * dx - 2) * (dy == 0), (3 * dy * dy - 2) * (dx == 0), dx * dy / 4]
    for dy, dx in _NEIGHBOURS
], dtype=np.float64)


def decode(heatmaps, refine: str = "taylor", blur_sigma: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Keypoints (..., K, 2) in heatmap pixels and peak values (..., K) from (..., K, H, W) heatmaps (torch
    or numpy; float32 numpy out).

    refine: "none" = integer argmax; "quarter" = argmax moved a quarter pixel towards the higher
    neighbour (Newell et al.); "taylor" = one Newton step on the log heatmap around the argmax
    (exact for a Gaussian peak; Zhang et al., DARK), falling back to "quarter" at borders or where
    the log heatmap is not a local maximum. `blur_sigma` > 0 smooths the maps first (useful for
    network predictions, whose peaks are not clean Gaussians): it moves the peak, not its value, which stays
    the map's own maximum.

    numpy inside: a face's 68 small maps take dozens of tiny operations, each several times cheaper in
    numpy than in torch, which is what the per-face latency of video is made of."""
    if refine not in ("none", "quarter", "taylor"):
        raise ValueError(f"refine must be none, quarter or taylor, got {refine!r}")
    if _is_torch(heatmaps):
        maps = heatmaps.detach().float().cpu().numpy()
    else:
        maps = np.asarray(heatmaps, dtype=np.float32)
    *lead, height, width = maps.shape
    flat = maps.reshape(-1, height, width)
    count = flat.shape[0]
    if blur_sigma > 0:
        peak = flat.reshape(count, -1).max(axis=1)
        flat = _blur(flat, blur_sigma)
    index = flat.reshape(count, -1).argmax(axis=1)
    py, px = np.divmod(index, width)
    if blur_sigma <= 0:
        peak = flat.reshape(count, -1)[np.arange(count), index]
    coords = np.stack([px, py], axis=1).astype(np.float32)

    def result(xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return xy.astype(np.float32).reshape(*lead, 2), peak.astype(np.float32).reshape(lead)

    if refine == "none":
        return result(coords)

    # The 3x3 neighbourhood of each argmax, clamped at the borders: all that the sub-pixel step reads.
    ys = np.clip(py[:, None] + _NEIGHBOURS[:, 0], 0, height - 1)
    xs = np.clip(px[:, None] + _NEIGHBOURS[:, 1], 0, width - 1)
    patch = flat.reshape(count, -1)[np.arange(count)[:, None], ys * width + xs]  # (count, 9)
    inner = np.stack([(px > 0) & (px < width - 1), (py > 0) & (py < height - 1)], axis=1)
    offset = np.where(inner, 0.25 * np.sign(patch @ _DIFFERENCES[:, :2]), 0.0).astype(np.float32)
    if refine == "taylor":
        # float64 and a tiny floor: the tails of narrow Gaussians must not be clipped.
        gx, gy, hxx, hyy, hxy = (np.log(np.maximum(patch.astype(np.float64), 1e-30)) @ _DIFFERENCES).T
        det = hxx * hyy - hxy**2
        safe_det = np.where(det > 1e-12, det, 1.0)  # where it is not, the step is not taken
        newton = np.stack([hxy * gy - hyy * gx, hxy * gx - hxx * gy], axis=1) / safe_det[:, None]  # -H^-1 g
        good = (inner.all(axis=1) & (det > 1e-12) & (hxx < 0) & (peak > 0)
                & (np.abs(newton) <= 1.0).all(axis=1))
        offset = np.where(good[:, None], newton.astype(np.float32), offset)
    return result(coords + offset)
