"""The one sample schema every reader produces, and a `Source`: samples + their spec + what was skipped.

Coordinates are 0-based pixel positions with pixel centres at integers: the top-left pixel covers
[-0.5, 0.5) x [-0.5, 0.5) and its centre is (0, 0).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from dunet import DunetError
from dunet.data.spec import DatasetSpec


@dataclass
class Sample:
    image_path: str  # loaded lazily; for generated data an identifier, not a file
    keypoints: np.ndarray  # (K, 2) float32, 0-based pixels; (0, 0) where unlabelled
    visible: np.ndarray  # (K,) float32: 1 = labelled (even if occluded), 0 = unlabelled (mask it out)
    center: np.ndarray  # (2,) float32: centre of the person / face box
    scale: float  # side of the square box in pixels, before the spec's box_margin
    meta: dict = field(default_factory=dict)  # e.g. head_size (MPII), occluded (K,) bool, source index

    def __post_init__(self) -> None:
        self.keypoints = np.array(self.keypoints, dtype=np.float32).reshape(-1, 2)
        self.visible = np.asarray(self.visible, dtype=np.float32).reshape(-1)
        # Unlabelled points get (0, 0): finite, so masked arithmetic (x * 0) never makes NaN.
        self.keypoints[self.visible <= 0] = 0.0
        self.center = np.asarray(self.center, dtype=np.float32).reshape(2)
        self.scale = float(self.scale)

    @property
    def num_keypoints(self) -> int:
        return len(self.keypoints)


@dataclass
class BadItem:
    path: str
    problem: str

    def __str__(self) -> str:
        return f"{self.path}: {self.problem}"


@dataclass
class Source:
    """A data set as read: its samples, its landmark spec and the bad items that were skipped."""

    name: str  # the FORMAT:PATH it was opened from
    spec: DatasetSpec
    samples: list[Sample]
    skipped: list[BadItem] = field(default_factory=list)
    # How to turn a sample into pixels; files by default, a renderer for generated data.
    loader: Callable[[Sample], np.ndarray] | None = field(default=None, repr=False)

    def __len__(self) -> int:
        return len(self.samples)

    def load_image(self, index: int) -> np.ndarray:
        """(H, W, 3) uint8 RGB image of sample `index`; DunetError naming the file if it is bad."""
        sample = self.samples[index]
        if self.loader is not None:
            return self.loader(sample)
        from dunet.data.images import load_image

        return load_image(sample.image_path)


def box_from_keypoints(keypoints: np.ndarray, visible: np.ndarray) -> tuple[np.ndarray, float]:
    """Centre and side (max of width, height) of the box around the labelled keypoints."""
    points = keypoints[visible > 0]
    if len(points) == 0:
        raise ValueError("no labelled keypoints")
    low, high = points.min(axis=0), points.max(axis=0)
    side = float(max(high - low))
    return (low + high) / 2, max(side, 1.0)


def normalisers(spec: DatasetSpec, samples: Sequence[Sample]) -> np.ndarray:
    """(N,) float64: the spec's normaliser of each sample in original-image pixels (what NME and PCK divide
    by), NaN where it is undefined: a needed point unlabelled, no head box, zero length. The one definition;
    the dataset, the metrics and the CED plot all use it."""
    if not samples:
        return np.empty(0)
    kind, arg = spec.normaliser
    if kind in ("interocular", "torso"):
        a, b = arg
        ends = np.stack([s.keypoints[[a, b]] for s in samples]).astype(np.float64)
        labelled = np.array([s.visible[a] > 0 and s.visible[b] > 0 for s in samples])
        lengths = np.where(labelled, np.linalg.norm(ends[:, 0] - ends[:, 1], axis=-1), np.nan)
    elif kind == "head":
        lengths = np.array([s.meta.get("head_size", np.nan) for s in samples], dtype=np.float64)
    else:  # "bbox": the object's own size where the crop box is something else (a whole DeepLabCut frame)
        lengths = np.array([s.meta.get("object_size", s.scale) for s in samples], dtype=np.float64)
    return np.where(np.isfinite(lengths) & (lengths > 0), lengths, np.nan)


def normaliser(spec: DatasetSpec, sample: Sample) -> float:
    """The spec's normaliser of one sample; see `normalisers`."""
    return float(normalisers(spec, [sample])[0])


def check_keypoints(
    keypoints: np.ndarray, visible: np.ndarray, width: int | None, height: int | None, expected: int | None = None
) -> str | None:
    """The problem with a sample's labelled keypoints, or None. Unlabelled points are not checked.

    Points outside the image are real: a truncated person has joints labelled past the edge, and the
    dataset masks any point that lands outside the heatmap after cropping. Only impossible values are
    rejected: NaN or inf, and points more than one image size outside the image (a sentinel such as
    -1e4 left labelled, or coordinates of another resolution)."""
    if expected is not None and len(keypoints) != expected:
        return f"expected {expected} keypoints, found {len(keypoints)}"
    labelled = visible > 0
    if not labelled.any():
        return None
    bad = labelled & ~np.isfinite(keypoints).all(axis=1)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        return f"keypoint {i} is not a number ({keypoints[i, 0]}, {keypoints[i, 1]})"
    if width is not None and height is not None:
        size = np.array([width, height], dtype=np.float64)
        far = labelled & ((keypoints < -size) | (keypoints > 2.0 * size)).any(axis=1)
        if far.any():
            i = int(np.flatnonzero(far)[0])
            return (
                f"keypoint {i} at ({keypoints[i, 0]:.1f}, {keypoints[i, 1]:.1f}) is far outside "
                f"the {width}x{height} image (more than the image's size beyond its edge)"
            )
    return None


def require_samples(source: Source) -> Source:
    """An empty data set is an error, with the reason when everything was skipped."""
    if not source.samples:
        if source.skipped:
            raise DunetError(
                f"{source.name}: no usable samples; all {len(source.skipped)} items are bad, "
                f"the first: {source.skipped[0]}"
            )
        raise DunetError(f"{source.name}: the data set is empty (no annotated samples found)")
    return source
