"""The Python API: one object, one call.

    import dunet

    face = dunet.load()                    # the fast face model; or a pretrained name, a run, a .safetensors / .onnx / .xml
    result = face.predict("photo.jpg")    # the largest face BlazeFace finds; box=(x, y, w, h) to give one
    result.points   # (K, 2) x, y in image pixels
    result.scores   # (K,) in [0, 1]
    result.names    # K landmark names

Every way in (this API, `dunet predict`, video) goes through `Landmarker._run`: the box becomes a square crop
(the spec's context margin around an object box), the network runs in batches, and landmarks come back in
image pixels with their scores (`dunet.runtime.model.LandmarkModel.predict_crops`: decoding and the score live
there). No PyTorch: `pip install dunet` runs all of it.

An image given as a file path is decoded no larger than its crops need: a 12,000 px photo whose crop is
resized to 128 px is decoded at 1/8 of its size (`dunet.data.images.load_reduced`), and the points come back
in the pixels of the full image.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from dunet import DunetError

if TYPE_CHECKING:
    from dunet.data.images import ReducedImage

Box = tuple[float, float, float, float]  # x, y, width, height in image pixels

# How a face detector's box relates to the box around the 68 landmarks (the box a model was trained on),
# measured on the 1,207 300-W faces by `python -m dunet.runtime.detect ../shared/data/300w`: median side of
# the detector box / side of the landmark box, and the landmark box centre's offset from the detector box
# centre, in landmark-box sides.
DETECTOR_BOX = {"blazeface": (1.026, (0.001, 0.052)), "haar": (1.148, (0.004, 0.164))}
# The long side, in pixels, that an image file is decoded at for each face detector: BlazeFace shrinks the image
# to 128 px anyway (this is 8x that); the Haar cascade finds faces down to 24 px, so it gets the full size.
DETECTOR_SIDE = {"blazeface": 8 * 128, "haar": math.inf}
# A crop is cut from an image decoded at least twice its size, so the crop is still averaged down from it.
CROP_DETAIL = 2


@dataclass
class Landmarks:
    """The landmarks of one object (face, person, animal) in one image."""

    points: np.ndarray  # (K, 2) float32 x, y in image pixels (0, 0 = centre of the top-left pixel)
    scores: np.ndarray  # (K,) float32 in [0, 1]: the heatmap peak, see LandmarkModel.predict_crops
    names: tuple[str, ...]  # (K,) landmark names, in the model's order
    box: Box  # the box the landmarks were predicted in (given, detected, tracked, or the whole image)

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.0f}" for v in self.box)
        return f"Landmarks({len(self.points)} points, mean score {float(np.mean(self.scores)):.2f}, box ({box}))"

    def to_dict(self, decimals: int = 2) -> dict:
        """`{"box": [x, y, w, h], "landmarks": [[x, y], ...], "scores": [...]}`, rounded: what predictions.json holds."""
        return {"box": [round(float(v), decimals) for v in self.box],
                "landmarks": [[round(float(x), decimals), round(float(y), decimals)] for x, y in self.points],
                "scores": [round(float(s), 4) for s in self.scores]}


def load(name_or_path: str | Path = "face", backend: str = "auto", device: str = "auto", *, precision: str = "auto",
         detect_faces: bool | None = None, flip: bool = False, batch_size: int = 8, threads: int = 0) -> "Landmarker":
    """A landmarker from a pretrained model name (`dunet models`; "face" and "pose" name each task's default
    model), a training run or checkpoint directory, a `.safetensors` / packed model, or an exported `.onnx` /
    OpenVINO `.xml` file. With no argument: the fast face model.

    backend: "auto" (the fastest installed: OpenVINO, which every install has, builds the network from the
    model file's weights), "openvino", "onnx" (onnxruntime) or "torch" (PyTorch: `pip install 'dunet[train]'`).
    device: "auto", "cpu", "cuda" or "cuda:N" (GPUs run PyTorch). precision: "auto", "fp32" or "bf16".
    detect_faces: find faces with the shipped BlazeFace detector when no box is given; None (the default):
    as the model card says (its crop detector: a face model's is BlazeFace, whatever its file format), else
    the whole image is the crop.
    flip: average with the prediction on the mirrored crop (slower, a little more accurate).
    threads: CPU threads of the runtime (of PyTorch for backend torch); 0 = every usable core that other work
    does not keep busy when the model loads."""
    from dunet.runtime.model import load_model

    runner = load_model(name_or_path, backend=backend, precision=precision, device=device, threads=threads)
    if detect_faces is None:
        detect_faces = finds_faces(runner)
    return Landmarker(runner, detect_faces=detect_faces, flip=flip, batch_size=batch_size)


class Landmarker:
    """A landmark model ready to predict: `predict` for one image, `predict_batch` for many."""

    def __init__(self, runner, *, detect_faces: bool = False, flip: bool = False, batch_size: int = 8,
                 face_detector: str = "blazeface"):
        if batch_size < 1:
            raise DunetError(f"batch size {batch_size}: must be at least 1")
        if flip and not runner.spec.can_flip:
            raise DunetError(f"flip test needs left/right pairs, which the {runner.spec.name!r} spec lacks")
        if face_detector not in DETECTOR_BOX:
            raise DunetError(f"face detector {face_detector!r}: choose one of {', '.join(DETECTOR_BOX)}")
        self.runner = runner
        self.detect_faces = detect_faces
        self.face_detector = face_detector
        self.flip = flip
        self.batch_size = batch_size

    @property
    def names(self) -> tuple[str, ...]:
        """The landmark names, in the order of `Landmarks.points`."""
        return tuple(self.runner.spec.keypoints)

    @property
    def spec(self):
        """The landmark spec (`dunet.data.spec.DatasetSpec`): names, flip pairs, skeleton, normaliser, box margin."""
        return self.runner.spec

    @property
    def name(self) -> str:
        """A short description of the model that runs (its architecture and file)."""
        return self.runner.name

    def __repr__(self) -> str:
        return f"Landmarker({self.name}, {len(self.names)} landmarks, {self.runner.input_size} px)"

    # --- public calls ---------------------------------------------------------------------------------------

    def draw(self, image, results) -> np.ndarray:
        """A copy of `image` (as `predict` takes it) with `results` drawn on it: a `predict` result, a list of them,
        or None. The skeleton in grey, the points coloured per landmark, those scoring below
        dunet.data.draw.LOW_SCORE as rings; the names in a panel beside the image for up to 24 landmarks."""
        from dunet.data.draw import draw_overlay

        found = [r for r in (results if isinstance(results, list) else [results]) if r is not None]
        canvas = as_rgb(image)
        for i, r in enumerate(found):
            canvas = draw_overlay(canvas, r.points, np.ones(len(r.points)), self.spec, scores=r.scores,
                                  palette="keypoint", legend=i == len(found) - 1)
        return canvas if found else canvas.copy()

    def predict(self, image, box: Sequence[float] | None = None, *, boxes: Iterable[Sequence[float]] | None = None):
        """Landmarks of one object in `image` (an (H, W, 3) uint8 RGB array, a PIL image or a file path).

        box: x, y, w, h of the object; without one, the largest detected face (detect_faces=True; None
        if there is none) or the whole image. boxes=[...]: one result per box, as a list."""
        if box is not None and boxes is not None:
            raise DunetError("give either box or boxes, not both")
        if boxes is not None:
            return self._run([self._job(image, list(boxes))])[0]
        if box is not None:
            return self._run([self._job(image, [box])])[0][0]
        picture, found = self._job(image, None)
        return self._run([(picture, found[:1])])[0][0] if found else None

    def predict_batch(self, images: Iterable, boxes: Iterable | None = None, *,
                      upright: bool = True) -> list[list[Landmarks]]:
        """One list of results per image. `boxes`: per image None (every detected face, or the whole
        image) or a list of x, y, w, h. Images are read, cropped and dropped one by one and the crops run
        through the network `batch_size` at a time, so a long list never sits in memory. `upright=False`:
        image files are used as stored, not turned by their EXIF orientation."""
        per_image = boxes if boxes is not None else _nones()
        return self._run(self._job(image, image_boxes, upright) for image, image_boxes in zip(images, per_image))

    def detect(self, image) -> list[Box]:
        """Face boxes (x, y, w, h), largest first, from the shipped face detector."""
        from dunet.runtime.detect import detect_faces

        return [tuple(float(v) for v in b) for b in detect_faces(as_rgb(image), detector=self.face_detector)]

    # --- the one pipeline -----------------------------------------------------------------------------------

    def crop_for(self, image: ReducedImage, box: Box, kind: str):
        """(3, S, S) crop and its crop-to-image affine for an object box (the spec's margin around it) or the
        whole image (kind "image": used as it is). The box is in the pixels of the full image; the crop is
        cut from `image.pixels`, and the affine maps it to the full image."""
        from dunet.data.transforms import crop_image

        x, y, w, h = box
        centre = image.from_full([[x + w / 2 - 0.5, y + h / 2 - 0.5]])[0]
        crop, affine = crop_image(image.pixels, centre, self._crop_side(box, kind) / image.factor,
                                  self.runner.input_size)
        affine = affine * image.factor  # crop pixels -> reduced pixels -> full-image pixels
        affine[:, 2] += np.asarray(image.offset, np.float32)
        return crop, affine

    def _crop_side(self, box: Box, kind: str) -> float:
        return max(box[2], box[3]) * (self.runner.spec.box_margin if kind == "object" else 1.0)

    def _job(self, image, boxes: list | None, upright: bool = True) -> tuple[ReducedImage, list[tuple[Box, str]]]:
        """The pixels of one image and its boxes (given, detected, or the whole image) as _run takes them. A
        file is decoded at the smallest size that its crops (and the face detector) still get every detail
        from; an image in memory is used as it is."""
        from dunet.data.images import ReducedImage, image_size, load_reduced, reduction_for

        if not isinstance(image, (str, Path)):
            picture = ReducedImage.of(as_rgb(image))
            return picture, self._boxes(boxes, picture.full_size, picture)
        size = image_size(image, upright=upright)
        picture = None
        if boxes is None and self.detect_faces:
            detail = reduction_for(max(size), DETECTOR_SIDE[self.face_detector])
            picture = load_reduced(image, detail, upright=upright)
        found = self._boxes(boxes, size, picture)
        crop_detail = CROP_DETAIL * self.runner.input_size
        factor = min((reduction_for(self._crop_side(box, kind), crop_detail) for box, kind in found), default=8)
        if picture is None or factor < picture.factor:
            picture = load_reduced(image, factor, upright=upright)
        return picture, found

    def _boxes(self, boxes: list | None, size: tuple[int, int],
               picture: ReducedImage | None) -> list[tuple[Box, str]]:
        """Given boxes, checked against the image size; else the faces detected in `picture`, or the whole image."""
        width, height = size
        if boxes is not None:
            return [(check_box(b, width, height), "object") for b in boxes]
        if not self.detect_faces:
            return [((0.0, 0.0, float(width), float(height)), "image")]
        found = []
        for x, y, w, h in self.detect(picture.pixels):
            corner = picture.to_full([[x - 0.5, y - 0.5]])[0] + 0.5  # the box's top-left pixel edge
            found.append(landmark_box((*corner, w * picture.factor, h * picture.factor), self.face_detector))
        return [(b, "object") for b in found]

    def _run(self, jobs: Iterable[tuple[ReducedImage | np.ndarray, list[tuple[Box, str]]]]) -> list[list[Landmarks]]:
        from dunet.data.images import ReducedImage

        results: list[list[Landmarks]] = []
        pending: list[tuple[int, Box, object, object]] = []

        def flush():
            if not pending:
                return
            coords, scores = self.runner.predict_crops(np.stack([p[2] for p in pending]),
                                                       np.stack([p[3] for p in pending]), self.flip)
            for (index, box, _, _), pts, score in zip(pending, coords, scores):
                results[index].append(Landmarks(np.asarray(pts, np.float32), np.asarray(score, np.float32),
                                                 self.names, tuple(float(v) for v in box)))
            pending.clear()

        for image, boxes in jobs:
            picture = image if isinstance(image, ReducedImage) else ReducedImage.of(image)  # video frames
            results.append([])
            for box, kind in boxes:
                crop, affine = self.crop_for(picture, box, kind)
                pending.append((len(results) - 1, box, crop, affine))
                if len(pending) >= self.batch_size:
                    flush()
        flush()
        return results


def landmark_box(detected: Box, detector: str = "blazeface") -> Box:
    """The box around the landmarks that a face detector's box stands for (see DETECTOR_BOX)."""
    ratio, (dx, dy) = DETECTOR_BOX[detector]
    x, y, w, h = detected
    side = max(w, h) / ratio
    cx, cy = x + w / 2 + dx * side, y + h / 2 + dy * side
    return (cx - side / 2, cy - side / 2, side, side)


def box_around(points: np.ndarray, scores: np.ndarray | None = None, min_score: float = 0.0) -> Box | None:
    """The box around the landmarks scoring at least `min_score` (None if fewer than two do): the box for
    the next video frame when tracking."""
    points = np.asarray(points, np.float64)
    keep = np.isfinite(points).all(axis=1)
    if scores is not None:
        keep &= np.asarray(scores) >= min_score
    if keep.sum() < 2:
        return None
    lo, hi = points[keep].min(0), points[keep].max(0)
    return (float(lo[0]), float(lo[1]), float(max(hi[0] - lo[0], 1.0)), float(max(hi[1] - lo[1], 1.0)))


def check_box(box, width: int, height: int) -> Box:
    """x, y, w, h as floats, or a DunetError naming the box and the image size: four finite numbers,
    a positive size, overlapping the image and at most 10x its size."""
    try:
        values = tuple(float(v) for v in box)
    except (TypeError, ValueError):
        raise DunetError(f"box {box!r}: expected four numbers x, y, w, h") from None
    text = ",".join(f"{v:g}" for v in values)
    if len(values) != 4:
        raise DunetError(f"box {text}: expected four numbers x, y, w, h, got {len(values)}")
    x, y, w, h = values
    if not all(math.isfinite(v) for v in values):
        raise DunetError(f"box {text}: not a finite number")
    if w <= 0 or h <= 0:
        raise DunetError(f"box {text}: width and height must be positive")
    if x >= width or y >= height or x + w <= 0 or y + h <= 0:
        raise DunetError(f"box {text}: outside the {width}x{height} image")
    if max(w, h) > 10 * max(width, height):
        raise DunetError(f"box {text}: more than 10 times the size of the {width}x{height} image")
    return values


def finds_faces(runner) -> bool:
    """Whether a model looks for faces itself when given no box: its model card names the face detector (a face
    model's card does, in every format it is exported to)."""
    return runner.card.detector == "blazeface"


def as_rgb(image) -> np.ndarray:
    """(H, W, 3) uint8 RGB from a file path (turned upright by its EXIF orientation), a PIL image, or a
    numpy array: uint8 RGB, grey or RGBA, or float in [0, 1]."""
    from PIL import Image

    from dunet.data.images import load_image, to_rgb8

    if isinstance(image, (str, Path)):
        return load_image(image, upright=True)
    if isinstance(image, Image.Image):
        return to_rgb8(image)
    array = np.asarray(image)
    if array.ndim == 2:
        array = array[:, :, None].repeat(3, axis=2)
    if array.ndim != 3 or array.shape[2] not in (3, 4) or min(array.shape[:2]) < 1:
        raise DunetError(f"image: expected an (H, W, 3) RGB array, got shape {array.shape}")
    array = array[:, :, :3]
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise DunetError("image: a float image must hold values in [0, 1]; pass uint8 for 0-255")
        array = np.round(array * 255)
    elif array.dtype != np.uint8:
        raise DunetError(f"image: expected uint8 or float pixels, got {array.dtype}")
    return np.ascontiguousarray(array, dtype=np.uint8)


def _nones():
    while True:
        yield None
