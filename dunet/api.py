"""The Python API: one object, one call.

    import dunet

    face = dunet.load()                    # the fast face model; or a pretrained name, a run, a .safetensors / .onnx / .xml
    result = face.predict("photo.jpg")    # the largest face BlazeFace finds; box=(x, y, w, h) to give one
    people = dunet.load("pose").predict_all("team.jpg")  # every person BlazePose's detector finds
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
# A box to predict in: the box, "object" (the spec's margin goes around it) or "image" (the crop is the whole
# image), and the detector's score for a detected person (else None).
Found = tuple[Box, str, float | None]

# How a detector's box relates to the box around the landmarks (the box a model was trained on): median long
# side of the detector box / long side of the landmark box, and the landmark box centre's offset from the
# detector box centre, in landmark-box sides. Faces: the 1,207 300-W faces, `python -m dunet.runtime.detect
# ../shared/data/300w`. People (BlazePose's body square around the box of the 14 LSP joints): LSP training
# people and LSPET people, `python bench/pose_box.py --lsp 400 --lspet 400` (bench/results/pose_box_*.json).
DETECTOR_BOX = {"blazeface": (1.026, (0.001, 0.052)), "haar": (1.148, (0.004, 0.164)),
                "blazepose": (1.268, (-0.005, 0.068))}
# The long side, in pixels, that an image file is decoded at for each detector: BlazeFace shrinks the image
# to 128 px anyway (this is 8x that); the Haar cascade finds faces down to 24 px, so it gets the full size;
# BlazePose's finest squares are half the short side, shrunk to 224 px: 4x224 keeps them sharp.
DETECTOR_SIDE = {"blazeface": 8 * 128, "haar": math.inf, "blazepose": 4 * 224}
OBJECT_OF = {"blazeface": "face", "haar": "face", "blazepose": "person"}  # what each detector finds
# A crop is cut from an image decoded at least twice its size, so the crop is still averaged down from it.
CROP_DETAIL = 2
# The most prominent person is the largest of those whose detection score is within this of the best one: a larger
# box that the detector doubts is more often a false person. Picked on 300 LSP training people (never the held-out
# ones) pasted into scenes, by PCK@0.2 of the person picked: the largest 71.1 %; the largest within 0.05 / 0.1 /
# 0.15 / 0.2 of the best score 73.9 / 73.7 / 73.7 / 73.6 %; the surest 73.8 %. On their own photos all score 77.8 %
# (0.07 points less for the surest and within 0.05 or 0.1).
SURE_WITHIN = 0.15


@dataclass
class Landmarks:
    """The landmarks of one object (face, person, animal) in one image."""

    points: np.ndarray  # (K, 2) float32 x, y in image pixels (0, 0 = centre of the top-left pixel)
    scores: np.ndarray  # (K,) float32 in [0, 1]: the heatmap peak, see LandmarkModel.predict_crops
    names: tuple[str, ...]  # (K,) landmark names, in the model's order
    box: Box  # the box the landmarks were predicted in (given, detected, tracked, or the whole image)
    detection_score: float | None = None  # the person detector's confidence in the box; None for a given box

    def __repr__(self) -> str:
        box = ", ".join(f"{v:.0f}" for v in self.box)
        return f"Landmarks({len(self.points)} points, mean score {float(np.mean(self.scores)):.2f}, box ({box}))"

    def to_dict(self, decimals: int = 2) -> dict:
        """`{"box": [x, y, w, h], "landmarks": [[x, y], ...], "scores": [...]}`, rounded, with "detection_score"
        for a detected person: what predictions.json holds."""
        data = {"box": [round(float(v), decimals) for v in self.box],
                "landmarks": [[round(float(x), decimals), round(float(y), decimals)] for x, y in self.points],
                "scores": [round(float(s), 4) for s in self.scores]}
        if self.detection_score is not None:
            data["detection_score"] = round(float(self.detection_score), 4)
        return data


def load(name_or_path: str | Path = "face", backend: str = "auto", device: str = "auto", *, precision: str = "auto",
         detect_faces: bool | None = None, flip: bool = False, batch_size: int = 8, threads: int = 0) -> "Landmarker":
    """A landmarker from a pretrained model name (`dunet models`; "face" and "pose" name each task's default
    model), a training run or checkpoint directory, a `.safetensors` / packed model, or an exported `.onnx` /
    OpenVINO `.xml` file. With no argument: the fast face model.

    backend: "auto" (the fastest installed: OpenVINO, which every install has, builds the network from the
    model file's weights), "openvino", "onnx" (onnxruntime) or "torch" (PyTorch: `pip install 'dunet[train]'`).
    device: "auto", "cpu", "cuda" or "cuda:N" (GPUs run PyTorch). precision: "auto", "fp32" or "bf16".
    detect_faces: find the objects with a shipped detector when no box is given; None (the default): as the
    model card says (its crop detector: a face model's is BlazeFace, a pose model's BlazePose's person
    detector, whatever its file format), else the whole image is the crop. True for a model whose card names
    no detector: faces, with BlazeFace.
    flip: average with the prediction on the mirrored crop (slower, a little more accurate).
    threads: CPU threads of the runtime (of PyTorch for backend torch); 0 = every usable core that other work
    does not keep busy when the model loads."""
    from dunet.runtime.model import load_model

    runner = load_model(name_or_path, backend=backend, precision=precision, device=device, threads=threads)
    if detect_faces is None:
        detect_faces = runner.card.detector is not None
    detector = (runner.card.detector or "blazeface") if detect_faces else None
    return Landmarker(runner, detector=detector, flip=flip, batch_size=batch_size)


class Landmarker:
    """A landmark model ready to predict: `predict` for one image, `predict_all` for every object found in it,
    `predict_batch` for many images. `detector`: what finds the objects when no box is given ("blazeface" or
    "haar" for faces, "blazepose" for people; None: the whole image is the crop)."""

    def __init__(self, runner, *, detector: str | None = None, flip: bool = False, batch_size: int = 8):
        if batch_size < 1:
            raise DunetError(f"batch size {batch_size}: must be at least 1")
        if flip and not runner.spec.can_flip:
            raise DunetError(f"flip test needs left/right pairs, which the {runner.spec.name!r} spec lacks")
        if detector is not None and detector not in DETECTOR_BOX:
            raise DunetError(f"detector {detector!r}: choose one of {', '.join(DETECTOR_BOX)}")
        self.runner = runner
        self.detector = detector
        self.flip = flip
        self.batch_size = batch_size

    @property
    def detect_faces(self) -> bool:
        """Whether a detector finds the objects (faces or people) when no box is given."""
        return self.detector is not None

    @property
    def finds(self) -> str | None:
        """What the detector finds, "face" or "person" (None: no detector)."""
        return OBJECT_OF.get(self.detector)

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

        box: x, y, w, h of the object; without one, the largest detected face or the most prominent person
        (`prominent_first`; None if there is none) or the whole image. boxes=[...]: one result per box, as a list."""
        if box is not None and boxes is not None:
            raise DunetError("give either box or boxes, not both")
        if boxes is not None:
            return self._run([self._job(image, list(boxes))])[0]
        if box is not None:
            return self._run([self._job(image, [box])])[0][0]
        picture, found = self._job(image, None)
        return self._run([(picture, found[:1])])[0][0] if found else None

    def predict_all(self, image, *, thorough: bool = True) -> list[Landmarks]:
        """Landmarks of every face or person the model's detector finds in `image`, the most prominent first
        (`prominent_first`), each with its box (and, for people, `detection_score`); [] when there is none.
        Without a detector: the whole image. People are looked for more thoroughly than by `predict`, which needs
        only the most prominent one (`detect_people` with THOROUGH_TILES and THOROUGH_STEP: about 4x the time on
        a large photo); `thorough=False` looks as `predict` does (videos, which look again every few frames)."""
        return self._run([self._job(image, None, thorough=thorough)])[0]

    def predict_batch(self, images: Iterable, boxes: Iterable | None = None, *, upright: bool = True,
                      largest: bool = False) -> list[list[Landmarks]]:
        """One list of results per image. `boxes`: per image None (every detected face or person, as `predict_all`
        finds them, or the whole image; `largest`: only the one `predict` gives, the largest face or the most
        prominent person, found as `predict` finds it) or a list of x, y, w, h. Images are read, cropped and
        dropped one by one and the crops run through the network `batch_size` at a time, so a long list never
        sits in memory. `upright=False`: image files are used as stored, not turned by their EXIF orientation."""
        per_image = boxes if boxes is not None else _nones()

        def jobs():
            for image, image_boxes in zip(images, per_image):
                picture, found = self._job(image, image_boxes, upright, thorough=not largest)
                yield picture, (found[:1] if largest and image_boxes is None else found)

        return self._run(jobs())

    def detect(self, image, *, thorough: bool = True) -> list[Box]:
        """Boxes (x, y, w, h) of the faces or people the model's detector finds (faces without one), in
        `prominent_first` order: the detector's own boxes, before they become landmark boxes. `thorough`: as
        in `predict_all`."""
        return [box for box, _ in self._detect(as_rgb(image), thorough)]

    def _detect(self, rgb: np.ndarray, thorough: bool = False) -> list[tuple[Box, float | None]]:
        from dunet.runtime.detect import (
            POSE_TILES, SQUARE_STEP, THOROUGH_STEP, THOROUGH_TILES, detect_faces, scored_people,
        )

        threads = self.runner.threads or 0  # the detector runs on the landmark model's threads
        if self.detector == "blazepose":
            tiles, step = (THOROUGH_TILES, THOROUGH_STEP) if thorough else (POSE_TILES, SQUARE_STEP)
            found = scored_people(rgb, tiles=tiles, step=step, threads=threads)
        else:
            found = [(b, None) for b in detect_faces(rgb, detector=self.detector or "blazeface", threads=threads)]
        return [(tuple(float(v) for v in box), score) for box, score in prominent_first(found)]

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

    def _job(self, image, boxes: list | None, upright: bool = True,
             thorough: bool = False) -> tuple[ReducedImage, list[Found]]:
        """The pixels of one image and its boxes (given, detected, or the whole image) as _run takes them. A
        file is decoded at the smallest size that its crops (and the detector) still get every detail
        from; an image in memory is used as it is. `thorough`: how people are looked for (`predict_all`)."""
        from dunet.data.images import ReducedImage, image_size, load_reduced, reduction_for

        if not isinstance(image, (str, Path)):
            picture = ReducedImage.of(as_rgb(image))
            return picture, self._boxes(boxes, picture.full_size, picture, thorough)
        size = image_size(image, upright=upright)
        picture = None
        if boxes is None and self.detector is not None:
            detail = reduction_for(max(size), DETECTOR_SIDE[self.detector])
            picture = load_reduced(image, detail, upright=upright)
        try:
            found = self._boxes(boxes, size, picture, thorough)
        except DunetError as err:  # a box that does not fit: say which image
            raise DunetError(f"{image}: {err}") from None
        crop_detail = CROP_DETAIL * self.runner.input_size
        factor = min((reduction_for(self._crop_side(box, kind), crop_detail) for box, kind, _ in found), default=8)
        if picture is None or factor < picture.factor:
            picture = load_reduced(image, factor, upright=upright)
        return picture, found

    def _boxes(self, boxes: list | None, size: tuple[int, int], picture: ReducedImage | None,
               thorough: bool = False) -> list[Found]:
        """Given boxes, checked against the image size; else the faces or people detected in `picture`, or the
        whole image."""
        width, height = size
        if boxes is not None:
            return [(check_box(b, width, height), "object", None) for b in boxes]
        if self.detector is None:
            return [((0.0, 0.0, float(width), float(height)), "image", None)]
        found = []
        for (x, y, w, h), score in self._detect(picture.pixels, thorough):
            corner = picture.to_full([[x - 0.5, y - 0.5]])[0] + 0.5  # the box's top-left pixel edge
            box = landmark_box((*corner, w * picture.factor, h * picture.factor), self.detector)
            found.append((box, "object", score))
        return found

    def _run(self, jobs: Iterable[tuple[ReducedImage | np.ndarray, list[Found]]]) -> list[list[Landmarks]]:
        from dunet.data.images import ReducedImage

        results: list[list[Landmarks]] = []
        pending: list[tuple[int, Box, float | None, object, object]] = []

        def flush():
            if not pending:
                return
            coords, scores = self.runner.predict_crops(np.stack([p[3] for p in pending]),
                                                       np.stack([p[4] for p in pending]), self.flip)
            for (index, box, found_score, _, _), pts, score in zip(pending, coords, scores):
                results[index].append(Landmarks(np.asarray(pts, np.float32), np.asarray(score, np.float32),
                                                 self.names, tuple(float(v) for v in box), found_score))
            pending.clear()

        for image, boxes in jobs:
            picture = image if isinstance(image, ReducedImage) else ReducedImage.of(image)  # video frames
            results.append([])
            for box, kind, found_score in boxes:
                crop, affine = self.crop_for(picture, box, kind)
                pending.append((len(results) - 1, box, found_score, crop, affine))
                if len(pending) >= self.batch_size:
                    flush()
        flush()
        return results


def prominent_first(found: list[tuple[Box, float | None]]) -> list[tuple[Box, float | None]]:
    """Detections (box, score or None), the most prominent first: those scored within SURE_WITHIN of the best score,
    largest first, then the others, largest first. Without scores (faces): largest first."""
    best = max((score for _, score in found if score is not None), default=None)

    def key(detection):
        (_, _, width, height), score = detection
        return best is None or score is None or score >= best - SURE_WITHIN, width * height

    return sorted(found, key=key, reverse=True)


def landmark_box(detected: Box, detector: str = "blazeface") -> Box:
    """The box around the landmarks that a detector's box stands for (see DETECTOR_BOX)."""
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
