"""One affine transform per sample: crop a square around the box, scale, rotate, optionally mirror.

A crop matrix M (2x3) maps original-image pixels to crop pixels, both 0-based with pixel centres at
integers (the convention of `cv2.warpAffine`); keypoints go through the same M, so image and keypoints
stay aligned. The inverse maps crop (or decoded heatmap) positions back to the original image. The resampling is
numpy's, so that inference needs no OpenCV.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


def crop_matrix(
    center: np.ndarray, box_size: float, output_size: int, rotation: float = 0.0, flip: bool = False
) -> np.ndarray:
    """Map the square of side `box_size` around `center`, rotated by `rotation` degrees
    (counter-clockwise on screen), onto an output_size x output_size crop; `flip` mirrors the crop."""
    zoom = output_size / float(box_size)
    angle = math.radians(rotation)
    cos, sin = math.cos(angle) * zoom, math.sin(angle) * zoom
    # y points down, so a counter-clockwise turn on screen is this matrix.
    linear = np.array([[cos, sin], [-sin, cos]])
    mid = (output_size - 1) / 2.0
    offset = np.array([mid, mid]) - linear @ np.asarray(center, dtype=np.float64)
    matrix = np.hstack([linear, offset[:, None]])
    if flip:
        mirror = np.array([[-1.0, 0.0, output_size - 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
        matrix = (mirror @ np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
    return matrix


def invert_affine(matrix: np.ndarray) -> np.ndarray:
    """The (2, 3) affine undoing `matrix`: x = A^-1 (y - t). Written out, as np.linalg.inv costs more than the rest of
    a crop's arithmetic."""
    matrix = np.asarray(matrix, dtype=np.float64)
    (a, b), (c, d) = matrix[:, :2]
    linear = np.array([[d, -b], [-c, a]]) / (a * d - b * c)
    return np.hstack([linear, -(linear @ matrix[:, 2])[:, None]])


def compose(outer: np.ndarray, inner: np.ndarray) -> np.ndarray:
    """The affine applying `inner` first, then `outer`."""
    return (np.vstack([outer, [0, 0, 1]]) @ np.vstack([inner, [0, 0, 1]]))[:2]


def apply_affine(points: np.ndarray, matrix: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    return points @ matrix[:, :2].T + matrix[:, 2]


def warp_image(image: np.ndarray, matrix: np.ndarray, output_size: int) -> np.ndarray:
    """Resample an (H, W) or (H, W, C) uint8 `image` through `matrix` into an output_size square (bilinear, black
    outside: what `cv2.warpAffine` gives with INTER_LINEAR and a constant border, to one grey level).

    Large reductions first shrink the needed region by area averaging, so small crops of big
    images do not alias."""
    return _warp(image, matrix, output_size).astype(image.dtype)


def _warp(image: np.ndarray, matrix: np.ndarray, output_size: int) -> np.ndarray:
    """`warp_image` as float32 (whole values): a network input needs no round trip through uint8."""
    zoom = math.sqrt(abs(np.linalg.det(matrix[:, :2])))
    height, width = image.shape[:2]
    corners = np.array([[-0.5, -0.5], [output_size - 0.5, -0.5], [-0.5, output_size - 0.5],
                        [output_size - 0.5, output_size - 0.5]])
    region = apply_affine(corners, invert_affine(matrix))
    x0, y0 = np.floor(region.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(region.max(axis=0)).astype(int) + 2
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    if x1 <= x0 or y1 <= y0:
        return np.zeros((output_size, output_size) + image.shape[2:], dtype=np.float32)
    factor = int(1.0 / zoom) if zoom < 0.5 else 1
    # Whole blocks of `factor` pixels where the image has them (the region's far edges move out by less than one).
    x1, y1 = min(width, x0 + -(-(x1 - x0) // factor) * factor), min(height, y0 + -(-(y1 - y0) // factor) * factor)
    part = image[y0:y1, x0:x1]
    # From region pixels to image pixels: a shift.
    to_image = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]])
    if factor > 1:
        part = _shrink(part, factor)
        # A small pixel's centre is the centre of the block it averages.
        to_image = compose(to_image, np.array([[factor, 0.0, (factor - 1) / 2], [0.0, factor, (factor - 1) / 2]]))
    return _bilinear(part, invert_affine(compose(matrix, to_image)), output_size)


def _shrink(image: np.ndarray, factor: int) -> np.ndarray:
    """The image reduced `factor` times by averaging factor x factor blocks. Blocks cut by the image's edge are
    completed by repeating the edge, so the grid of block centres stays regular."""
    rows, cols = -(-image.shape[0] // factor), -(-image.shape[1] // factor)
    missing = [(0, rows * factor - image.shape[0]), (0, cols * factor - image.shape[1])]
    if missing[0][1] or missing[1][1]:
        image = np.pad(image, missing + [(0, 0)] * (image.ndim - 2), mode="edge")
    # Strided slices added in place: several times faster than a mean over a reshaped view.
    total = image[0::factor].astype(np.uint32)
    for i in range(1, factor):
        total += image[i::factor]
    blocks = total.reshape(rows, cols, factor, *image.shape[2:])
    summed = blocks[:, :, 0].copy()
    for i in range(1, factor):
        summed += blocks[:, :, i]
    return ((summed + factor * factor // 2) // (factor * factor)).astype(image.dtype)


def _bilinear(image: np.ndarray, back: np.ndarray, size: int) -> np.ndarray:
    """A size x size float32 resampling of `image`: output pixel (x, y) is the bilinear sample at back @ (x, y, 1),
    zero outside the image, rounded to whole values."""
    height, width = image.shape[:2]
    channels = image.shape[2] if image.ndim == 3 else 1
    # One zero pixel around the image: samples outside fade into black, as with a constant border. Rows of
    # pixels are kept flat (width x channels), so that every array operation below runs over long rows.
    padded = np.zeros((height + 2, (width + 2) * channels), image.dtype)
    padded.reshape(height + 2, width + 2, channels)[1:-1, 1:-1] = image.reshape(height, width, channels)
    steps = np.arange(size, dtype=np.float64)

    def taps(positions, length):
        """The lower neighbour of each position in the padded axis, and the weight of the upper one."""
        positions = np.clip(positions + 1, 0, length + 1)
        low = np.minimum(positions.astype(np.int32), length)
        return low, (positions - low).astype(np.float32)

    def lerp(low, high, weight):  # low + weight * (high - low), in float32 whatever the inputs
        out = np.subtract(high, low, dtype=np.float32)
        out *= weight
        out += low
        return out

    if back[0, 1] == 0 and back[1, 0] == 0:
        # Neither rotated nor sheared (every crop at inference): the columns needed are gathered first, in uint8,
        # then the rows; four whole-row gathers instead of four gathers of single pixels, and few float temporaries
        # (fresh memory is what a small crop mostly pays for).
        top, down = taps(back[1, 1] * steps + back[1, 2], height)
        left, right = taps(back[0, 0] * steps + back[0, 2], width)
        columns = (left[:, None] * channels + np.arange(channels)).ravel()
        near, far = np.take(padded, columns, axis=1), np.take(padded, columns + channels, axis=1)
        right = np.repeat(right, channels)[None]
        out, lower = lerp(near[top], far[top], right), lerp(near[top + 1], far[top + 1], right)
        lower -= out
        lower *= down[:, None]
        out += lower
    else:
        # Every output pixel its own position, in float32 (at worst 1/1,000 px in an 8,000 px image, where
        # cv2.warpAffine keeps 1/32); weights repeated per channel so that no operation broadcasts over rows of
        # three values (numpy is slow at that).
        ys, xs = np.meshgrid(steps.astype(np.float32), steps.astype(np.float32), indexing="ij")
        along_x, along_y = back.astype(np.float32)
        top, down = taps(along_y[0] * xs + along_y[1] * ys + along_y[2], height)
        left, right = taps(along_x[0] * xs + along_x[1] * ys + along_x[2], width)
        flat = padded.reshape(-1, channels)
        at = (top * (width + 2) + left).ravel()
        right, down = (np.repeat(w.ravel(), channels).reshape(-1, channels) for w in (right, down))
        upper = lerp(np.take(flat, at, axis=0), np.take(flat, at + 1, axis=0), right)
        lower = lerp(np.take(flat, at + width + 2, axis=0), np.take(flat, at + width + 3, axis=0), right)
        out = lerp(upper, lower, down)
    return np.rint(out, out=out).reshape((size, size) + image.shape[2:])


def square_average(image: np.ndarray, corner: tuple[float, float], side: float, size: int) -> np.ndarray:
    """The square of `side` pixels whose top left corner is `corner` (x, y; pixel edges, so the image spans
    [0, W] x [0, H]) of an (H, W, C) uint8 image, as a (size, size, C) float32 image of whole values: each output
    pixel is the mean of the image over its footprint (pixels cut by its edges counted by the part inside), black
    outside the image. OpenCV's INTER_AREA for reductions, to one grey level; what the detectors' inputs are made by."""
    scale = side / size
    rows = _footprint_sums(image, corner[1], scale, size)
    both = _footprint_sums(np.ascontiguousarray(rows.transpose(1, 0, 2)), corner[0], scale, size)
    both *= np.float32(1.0 / (scale * scale))
    return np.rint(both, out=both).transpose(1, 0, 2)


def _footprint_sums(values: np.ndarray, start: float, scale: float, cells: int) -> np.ndarray:
    """Sums of `values` along axis 0 over the cells [start + j scale, start + (j + 1) scale), j < cells, counting a
    pixel cut by a cell's edge by the part of it inside the cell; nothing outside [0, n)."""
    count = values.shape[0]
    edges = np.clip(start + scale * np.arange(cells + 1), 0.0, count)
    whole = np.minimum(edges.astype(np.int64), count - 1)
    sums = np.zeros((cells,) + values.shape[1:], np.float32)
    for j in range(cells):  # a loop of whole-row sums: numpy's reduceat and cumsum along axis 0 are far slower
        if whole[j + 1] > whole[j]:
            np.add.reduce(values[whole[j]:whole[j + 1]], axis=0, dtype=np.float32, out=sums[j])
    # The part of the pixel at each edge that lies before the edge: gained by the cell ending there, lost by the next.
    cut = values[whole] * (edges - whole).astype(np.float32).reshape(-1, *(1,) * (values.ndim - 1))
    sums += cut[1:]
    sums -= cut[:-1]
    return sums


def unit_range(crop: np.ndarray) -> np.ndarray:
    """An (S, S, 3) RGB crop of values 0-255 (uint8, or whole floats) as float32 in [0, 1]: the pixel values every
    dunet network takes (its model card says so), in training and inference alike."""
    return np.multiply(crop, np.float32(1.0 / 255.0), dtype=np.float32)


def network_input(crop: np.ndarray) -> np.ndarray:
    """(3, S, S) float32 in [0, 1] from an (S, S, 3) crop: uint8 (scaled by `unit_range`) or float already in [0, 1]."""
    crop = unit_range(crop) if crop.dtype == np.uint8 else crop
    return np.ascontiguousarray(crop.transpose(2, 0, 1), dtype=np.float32)


def crop_image(image: np.ndarray, center, scale: float, input_size: int) -> tuple[np.ndarray, np.ndarray]:
    """Plain crop for prediction: the square of side `scale` pixels around `center` of an (H, W, 3)
    uint8 RGB image, resized to input_size. For a box from a data set the side is
    `sample.scale * spec.box_margin`. Returns the network input (`network_input`) and the (2, 3) float32 affine
    that maps crop pixels back to image pixels (apply it to decoded keypoints)."""
    matrix = crop_matrix(np.asarray(center, dtype=np.float64), scale, input_size)
    # The warp's whole float values scaled as a uint8 crop would be: no round trip through uint8.
    return network_input(unit_range(_warp(image, matrix, input_size))), invert_affine(matrix).astype(np.float32)


def flip_keypoints(keypoints: np.ndarray, visible: np.ndarray, width: int, flip_index: np.ndarray):
    """Mirror keypoints in an image `width` pixels wide and swap left/right landmarks."""
    mirrored = np.asarray(keypoints, dtype=np.float64).copy()
    mirrored[:, 0] = width - 1 - mirrored[:, 0]
    return mirrored[flip_index], np.asarray(visible)[flip_index]


@dataclass(frozen=True)
class AugmentParams:
    scale: float = 1.0  # crop side multiplier: > 1 shows more context (the object looks smaller)
    rotation: float = 0.0  # degrees
    flip: bool = False
    color: tuple[float, float, float] = (1.0, 1.0, 1.0)  # per-channel gain
    # A rectangle painted over the crop: (x, y, width, height) as fractions of the crop side, and its colour.
    occluder: tuple[float, float, float, float] | None = None
    occluder_color: tuple[float, float, float] = (0.5, 0.5, 0.5)
    shift: tuple[float, float] = (0.0, 0.0)  # the crop's centre moved by these fractions of its side (x, y)


@dataclass(frozen=True)
class Augmentation:
    """The random augmentation of training crops; `draw` picks one sample's `AugmentParams`.

    The paper's: scale in scale_range, rotation in +-rotation, flip half the time, per-channel colour
    gain in [1 - color_jitter, 1 + color_jitter] (the reference code's x[0.6, 1.4]). Not in the paper:
    with probability `occlusion`, a rectangle of random colour, 10-40 % of the crop side each way, hides
    part of the crop (the landmarks under it stay targets, as occluded ones are labelled). Nor is `shift`: the
    crop's centre moves by up to `shift` x its side each way, as a detector's box is never centred on the object
    the way the labelled landmarks' box is."""

    scale_range: tuple[float, float] = (0.75, 1.25)
    rotation: float = 30.0  # degrees
    flip: bool = True
    color_jitter: float = 0.4
    occlusion: float = 0.0
    shift: float = 0.0

    def draw(self, rng: np.random.Generator) -> AugmentParams:
        scale = float(rng.uniform(*self.scale_range))
        angle = float(rng.uniform(-self.rotation, self.rotation)) if self.rotation > 0 else 0.0
        mirror = bool(self.flip and rng.random() < 0.5)
        jitter = self.color_jitter
        gains = rng.uniform(1 - jitter, 1 + jitter, size=3) if jitter > 0 else np.ones(3)
        occluder, occluder_color = None, AugmentParams.occluder_color
        # Drawn last, and only when on, so that runs without occlusion see the same augmentation as before.
        if self.occlusion > 0 and rng.random() < self.occlusion:
            width, height = rng.uniform(0.1, 0.4, size=2)
            x, y = rng.uniform(0.0, 1.0 - width), rng.uniform(0.0, 1.0 - height)
            occluder = (float(x), float(y), float(width), float(height))
            occluder_color = tuple(float(c) for c in rng.uniform(0.0, 1.0, size=3))
        shift = (0.0, 0.0)
        if self.shift > 0:  # drawn after the rest, for the same reason
            shift = tuple(float(v) for v in rng.uniform(-self.shift, self.shift, size=2))
        return AugmentParams(scale, angle, mirror, tuple(float(g) for g in gains), occluder, occluder_color, shift)


def apply_occluder(image: np.ndarray, box: tuple[float, float, float, float],
                   color: tuple[float, float, float]) -> np.ndarray:
    """Paint the rectangle `box` (fractions of the image side) of a float HxWx3 image in `color`."""
    size = image.shape[0]
    x0, y0 = round(box[0] * size), round(box[1] * size)
    x1, y1 = round((box[0] + box[2]) * size), round((box[1] + box[3]) * size)
    image = image.copy()
    image[y0:y1, x0:x1] = np.asarray(color, dtype=image.dtype)
    return image


def apply_color(image: np.ndarray, gains: tuple[float, float, float]) -> np.ndarray:
    """Per-channel gain on a float image in [0, 1], clipped back to [0, 1]."""
    return np.clip(image * np.asarray(gains, dtype=image.dtype), 0.0, 1.0)
