"""Offline detectors, one home for them: faces (`detect_faces`: MediaPipe's BlazeFace, default, or OpenCV's
Haar cascade) and people (`detect_people`: MediaPipe's BlazePose person detector, default, or OpenCV's HOG).

BlazeFace (short range, 128x128 input; Apache-2.0, the file `face_detection_short_range.tflite` of the
mediapipe 0.10.14 wheel) ships in `dunet/pretrained/` (224 KB) and runs in OpenVINO, as the landmark models do
(`dunet.runtime.openvino.DetectorNetwork`). On the 1,207 faces of ../shared/data/300w it misses none,
the Haar cascade 149 (12.3 %): `python -m dunet.runtime.detect ../shared/data/300w` (docs/api.md). Those
images are face crops; BlazeFace short range is made for faces that fill a good part of the picture
(portraits, selfies, webcams): for small faces in a large photo give a box per face.

The Haar cascade ships inside the opencv-python(-headless) 4.x wheels (cv2.data.haarcascades), which the `video`
extra installs; BlazeFace and the person detector need no OpenCV. OpenCV 5 dropped the cascade: with it, or without
OpenCV, `detect_faces(..., detector="haar")` raises a DunetError that says what to install.

The person detector (Apache-2.0, `pose_detection.tflite` of the same wheel) ships as ONNX, 6.0 MB, and runs in
OpenVINO too (tools/pose_detector_onnx.py converted it when OpenCV ran the detectors, whose TFLite reader could
not). Its recall and
false positives against OpenCV's HOG: `python bench/person_detect.py`, docs/pose.md "Finding people".
"""

from __future__ import annotations

from functools import cache, lru_cache
from pathlib import Path

import numpy as np

from dunet import DunetError
from dunet.data.transforms import square_average
from dunet.runtime.backends import import_optional

CASCADE_FILE = "haarcascade_frontalface_default.xml"
BLAZEFACE_FILE = Path(__file__).resolve().parents[1] / "pretrained" / "blazeface_short_range.tflite"
INSTALL_HINT = "install it with: pip install 'dunet[video]' (OpenCV 4)"
DETECTORS = ("blazeface", "haar")

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels


def _check_image(image, caller: str = "detect_faces") -> np.ndarray:
    image = np.asarray(image)
    if (image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4))
            or 0 in image.shape[:2]):
        raise DunetError(f"{caller}: expected an RGB or grey uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def detect_faces(image: np.ndarray, *, detector: str = "blazeface", min_score: float = 0.5,
                 threads: int = 0) -> list[Box]:
    """Faces in an RGB (H, W, 3) or grey (H, W) uint8 image as (x, y, w, h) boxes, largest first.
    `detector`: "blazeface" (default; `min_score` is its confidence threshold) or "haar". `threads`: of the
    BlazeFace network (0: every usable core)."""
    if detector not in DETECTORS:
        raise DunetError(f"face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    rgb = _check_image(image)
    boxes = _blazeface(rgb, min_score, threads) if detector == "blazeface" else _haar(rgb)
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


# --- BlazeFace ---------------------------------------------------------------------------------------------

BLAZE_SIZE = 128


@cache  # never evicted: a released network would reset the signal stack (dunet.runtime.openvino)
def _network(path: Path, threads: int):
    """The detector network in `path`, compiled once per process for `threads` threads (0: every usable core)."""
    from dunet.runtime.cpu import usable_cores
    from dunet.runtime.openvino import DetectorNetwork

    return DetectorNetwork(path, threads or usable_cores())


@lru_cache(maxsize=1)
def _blazeface_anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] of the short-range model: 2 per cell of the 16x16 grid (stride 8),
    then 6 per cell of the 8x8 grid (its three stride-16 layers share one grid)."""
    return _ssd_anchors(((16, 2), (8, 6)))


def _ssd_anchors(grids: tuple[tuple[int, int], ...]) -> np.ndarray:
    """Anchor centres in [0, 1] of MediaPipe's SSD detectors, grid by grid: `per_cell` anchors at the centre
    of each cell, row by row (their sizes are fixed at 1, so only the centres matter)."""
    centres = []
    for grid, per_cell in grids:
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _letterbox(rgb: np.ndarray, size: int) -> tuple[np.ndarray, int, float, float]:
    """The image padded to a square with black, as MediaPipe does so that shapes keep their proportions,
    averaged down (or up) to `size` and scaled to [-1, 1], as a (1, size, size, 3) batch; with the square's side and
    the padding."""
    height, width = rgb.shape[:2]
    side = max(height, width)
    pad_x, pad_y = (side - width) / 2, (side - height) / 2
    small = square_average(rgb, (-int(pad_x), -int(pad_y)), side, size)
    return (small / 127.5 - 1.0)[None], side, pad_x, pad_y


def _sigmoid(raw: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(raw.reshape(-1).astype(np.float64), -100, 100)))


def _blazeface(rgb: np.ndarray, min_score: float, threads: int = 0) -> list[Box]:
    height, width = rgb.shape[:2]
    blob, side, pad_x, pad_y = _letterbox(rgb, BLAZE_SIZE)
    outputs = _network(BLAZEFACE_FILE, threads)(blob)  # TFLite's layout: NHWC
    raw_scores, raw_boxes = outputs["classificators"], outputs["regressors"]
    scores = _sigmoid(raw_scores)
    keep = scores >= min_score
    if not keep.any():
        return []
    reg = raw_boxes.reshape(-1, 16)[keep] / BLAZE_SIZE
    centre = _blazeface_anchors()[keep] + reg[:, :2]
    size = reg[:, 2:4]
    corners = np.concatenate([centre - size / 2, centre + size / 2], axis=1) * side - [pad_x, pad_y, pad_x, pad_y]
    boxes = []
    for x0, y0, x1, y1 in _weighted_nms(corners, scores[keep]):
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            boxes.append((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))))
    return boxes


def _weighted_nms(corners: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3, with_scores: bool = False):
    """MediaPipe's weighted suppression: each cluster of overlapping boxes becomes their score-weighted mean
    (with the cluster's best score when `with_scores`)."""
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    merged = []
    remaining = np.ones(len(scores), bool)
    while remaining.any():
        first = int(np.argmax(remaining))
        ious = _iou(corners[first], corners)
        cluster = remaining & (ious > iou_threshold)
        weights = scores[cluster][:, None]
        box = (corners[cluster] * weights).sum(0) / weights.sum()
        merged.append((box, float(scores[first])) if with_scores else box)
        remaining &= ~cluster
    return merged


def _intersection(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """Area of `box` (x0, y0, x1, y1) shared with each of `boxes` (N, 4)."""
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    return np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)


def _area(boxes: np.ndarray) -> np.ndarray:
    return (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    inter = _intersection(box, boxes)
    return inter / np.maximum(_area(box) + _area(boxes) - inter, 1e-9)


# --- people ----------------------------------------------------------------------------------------------

POSE_DETECTOR_FILE = Path(__file__).resolve().parents[1] / "pretrained" / "pose_detection.onnx"
PERSON_DETECTORS = ("blazepose", "hog")
POSE_SIZE = 224
POSE_TILES = (1, 1.5, 2)  # besides the whole image: squares of its short side, of two thirds and of half of it
SQUARE_STEP = 0.5  # neighbouring squares lie half a square apart
# The search for every person in a photo (Landmarker.predict_all): thirds of the short side too, and squares a
# third of a square apart, so that someone cut by the edges of one square is whole in another. Picked on scenes of
# LSP training people; the figures are in docs/pose.md, "Finding people".
THOROUGH_TILES = (1, 1.5, 2, 3)
THOROUGH_STEP = 1 / 3
CONTAINED = 0.7  # share of a box's area inside a larger, more confident one that makes it a part of a person
SMALLEST_PERSON = 100  # px tall: the squares look for people from this height to a third of the picture's
MIN_ZOOM = 1.25  # a square shows people at least this much larger than the whole image: fewer passes, same recall
# Where on the torso the body square is centred, from the hips (0) to the shoulders (1). MediaPipe centres it
# on the hips. The crop is placed at a fixed offset from the square's centre (dunet.api.DETECTOR_BOX), so what
# counts is how much that offset varies from person to person: on 269 pasted LSP-extended people (training
# data, a one-off script) least at 0.3-0.4 of the way up (0.35: median deviation 0.059 / 0.074 of the joints'
# long side across / along, against 0.080 / 0.109 from the hips).
TORSO_POINT = 0.35
FRAMED_MIN_SCORE = 0.7  # the framed second look's threshold: at 0.5 it saw people in a fifth of mouse frames


def detect_people(image: np.ndarray, *, detector: str = "blazepose", min_score: float = 0.5,
                  tiles: tuple[float, ...] = POSE_TILES, step: float = SQUARE_STEP, threads: int = 0) -> list[Box]:
    """People in an RGB (H, W, 3) or grey (H, W) uint8 image as (x, y, w, h) boxes, most confident first;
    an empty list when there is nobody. `scored_people` gives each box's score too.

    "blazepose" (default): MediaPipe's BlazePose person detector (Google, Apache License 2.0: the
    `pose_detection.tflite` of the mediapipe 0.10.14 wheel, converted to `dunet/pretrained/pose_detection.onnx`
    by tools/pose_detector_onnx.py, run by OpenVINO). Its box is a square whose side is twice the
    detector's body radius, as MediaPipe's body region, but centred TORSO_POINT of the way from the hips to
    the shoulders where MediaPipe's is centred on the hips, so it holds the whole person in any pose;
    `min_score` is its confidence threshold. It sees an image at 224x224, where a person under about a third
    of the picture's height is often missed; so it also looks at overlapping squares (`step` of a square
    apart: half) of 1/n of the short side for each n in `tiles`, where they show people at least MIN_ZOOM times
    larger than the whole image does. The default, squares of the short side, of two thirds and of half of it, finds
    people down to about 100 px tall in a 1280x960 photo at 24 passes (the detector finds people best in a
    square little larger than them); `tiles=()` looks at the whole image only (1 pass, for photos framed on a
    person); `tiles=THOROUGH_TILES, step=THOROUGH_STEP` also looks at thirds, and at squares a third apart (4.3x
    the time; what `predict_all` looks with). The box of a part of a person (inside a larger, surer box)
    is dropped; and when nobody is found, it looks again at the whole image in a black frame, for a person
    who fills the picture: docs/pose.md, "Finding people".
    "hog": OpenCV's HOG + linear SVM people detector (no file; upright, walking people at least ~100 px
    tall); `min_score` applies to its SVM margin; `tiles` does not apply.
    `threads`: of the detector network (0: every usable core)."""
    return [box for box, _ in scored_people(image, detector=detector, min_score=min_score, tiles=tiles, step=step,
                                            threads=threads)]


def scored_people(image: np.ndarray, *, detector: str = "blazepose", min_score: float = 0.5,
                  tiles: tuple[float, ...] = POSE_TILES, step: float = SQUARE_STEP,
                  threads: int = 0) -> list[tuple[Box, float]]:
    """`detect_people`'s boxes, each with its score (BlazePose: the confidence in [0, 1]; HOG: its SVM margin),
    most confident first."""
    if detector not in PERSON_DETECTORS:
        raise DunetError(f"person detector {detector!r}: choose one of {', '.join(PERSON_DETECTORS)}")
    rgb = _check_image(image, "detect_people")
    if not all(isinstance(n, (int, float)) and n >= 1 for n in tiles):
        raise DunetError(f"detect_people: tiles must be numbers >= 1, got {tiles!r}")
    if not (isinstance(step, (int, float)) and 0 < step <= 1):
        raise DunetError(f"detect_people: step must be a fraction of a square in (0, 1], got {step!r}")
    found = (_blazepose(rgb, min_score, tuple(tiles), step, threads) if detector == "blazepose"
             else _hog(rgb, min_score))
    return sorted(found, key=lambda f: f[1], reverse=True)


@lru_cache(maxsize=1)
def _pose_anchors() -> np.ndarray:
    """(2254, 2): MediaPipe's pose detection anchors (SSD, strides 8, 16, 32, 32, 32 on 224 px, 2 anchors per
    layer and cell): 2 per cell of the 28x28 grid, 2 per cell of 14x14, 6 per cell of 7x7."""
    return _ssd_anchors(((28, 2), (14, 2), (7, 6)))


def _blazepose(rgb: np.ndarray, min_score: float, tiles: tuple[float, ...] = POSE_TILES,
               step: float = SQUARE_STEP, threads: int = 0) -> list[tuple[Box, float]]:
    """The whole image, then overlapping squares of 1/n of its short side for each n in `tiles` (`step` of a
    square apart), so that people far smaller than the picture fill enough of the model's 224 px input. All
    boxes are merged by MediaPipe's weighted suppression, then the boxes of parts of people dropped. Nobody
    found: a second look at the whole image, framed (`_pose_window`), at the stricter FRAMED_MIN_SCORE."""
    height, width = rgb.shape[:2]
    corners, scores = _pose_window(rgb, threads)
    found_corners, found_scores = [corners], [scores]
    for side in _square_sides(height, width, tiles):
        for y in _starts(height, side, step):
            for x in _starts(width, side, step):
                corners, scores = _pose_window(rgb[y: y + side, x: x + side], threads)
                corners = corners + [x, y, x, y]
                # A person cut by an inner edge of the square is whole in a neighbouring one: drop it here.
                margin = 0.1 * (corners[:, 2] - corners[:, 0])
                whole = (((corners[:, 0] >= x - margin) | (x == 0)) & ((corners[:, 1] >= y - margin) | (y == 0))
                         & ((corners[:, 2] <= x + side + margin) | (x + side == width))
                         & ((corners[:, 3] <= y + side + margin) | (y + side == height)))
                found_corners.append(corners[whole])
                found_scores.append(scores[whole])
    corners, scores = np.concatenate(found_corners), np.concatenate(found_scores)
    keep = scores >= min_score
    if not keep.any():
        corners, scores = _pose_window(rgb, threads, framed=True)
        keep = scores >= max(min_score, FRAMED_MIN_SCORE)
    found = []
    for (x0, y0, x1, y1), score in _drop_parts(_weighted_nms(corners[keep], scores[keep], with_scores=True)):
        x0, y0 = max(0.0, x0), max(0.0, y0)
        x1, y1 = min(float(width), x1), min(float(height), y1)
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            found.append(((int(round(x0)), int(round(y0)), int(round(x1 - x0)), int(round(y1 - y0))), score))
    return found


def _square_sides(height: int, width: int, tiles: tuple[float, ...]) -> list[int]:
    """The sides of the squares to look at besides the whole image: 1/n of the short side for each n in
    `tiles`, but none too small to hold a person, nor one that shows people hardly larger than the whole
    image does (a square of a near-square picture); and none in a picture too small to hold a person whom the
    whole image hides (between SMALLEST_PERSON and a third of its long side)."""
    if max(height, width) < 3 * SMALLEST_PERSON:
        return []
    sides = [int(min(height, width) / n) for n in tiles]
    return [side for side in sides if side >= POSE_SIZE // 2 and max(height, width) / side >= MIN_ZOOM]


def _drop_parts(found: list) -> list:
    """`found` without the boxes of parts of people: a box lying mostly inside a larger and more confident
    one. A square of the picture that holds part of a person shows the detector a smaller person, and
    suppression keeps its box, which overlaps the whole person's by little."""
    boxes = np.array([box for box, _ in found]).reshape(-1, 4)
    scores = np.array([score for _, score in found])
    areas = _area(boxes)
    kept = []
    for i, box in enumerate(boxes):
        larger = (areas > areas[i]) & (scores > scores[i])
        inside = _intersection(box, boxes[larger]) / max(areas[i], 1e-9)
        if not (inside >= CONTAINED).any():
            kept.append(found[i])
    return kept


def _starts(length: int, side: int, step: float = SQUARE_STEP) -> list[int]:
    """Where squares of `side` start along `length`, `step` of a square apart, the last one flush with the end."""
    if length <= side:
        return [0]
    starts = list(range(0, length - side + 1, max(int(side * step), 1)))
    return starts if starts[-1] == length - side else starts + [length - side]


def _pose_window(rgb: np.ndarray, threads: int = 0, framed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """One pass of the detector over an image: every anchor's body square (x0, y0, x1, y1) in image pixels
    and its score. `framed`: the image inside a black border of a quarter of its long side all round. The
    detector learnt people with room around them and misses many of those who fill the picture, cut by its
    edges, as in photos framed on a person: framed, it finds some of them (docs/pose.md, "Finding people")."""
    if framed:
        border = max(rgb.shape[:2]) // 4
        corners, scores = _pose_window(np.pad(rgb, ((border, border), (border, border), (0, 0))), threads)
        return corners - border, scores
    blob, side, pad_x, pad_y = _letterbox(rgb, POSE_SIZE)
    outputs = _network(POSE_DETECTOR_FILE, threads)(blob.transpose(0, 3, 1, 2))  # the ONNX file's layout: NCHW
    raw_boxes, raw_scores = outputs["boxes"], outputs["scores"]
    scores = _sigmoid(raw_scores)
    keep = scores >= 0.1  # below any useful threshold; saves work in the merge
    # Each row: the face box (x, y, w, h), then 4 keypoints (x, y): hips centre, a point at the body's radius
    # from it, shoulders centre, a point at the upper body's radius; offsets in input pixels from the anchor.
    raw = raw_boxes.reshape(-1, 12)[keep] / POSE_SIZE
    anchors = _pose_anchors()[keep]
    hips, shoulders = anchors + raw[:, 4:6], anchors + raw[:, 8:10]
    radius = np.linalg.norm(anchors + raw[:, 6:8] - hips, axis=1)
    centre = hips + TORSO_POINT * (shoulders - hips)
    corners = np.concatenate([centre - radius[:, None], centre + radius[:, None]], axis=1)
    return corners * side - [pad_x, pad_y, pad_x, pad_y], scores[keep]


@lru_cache(maxsize=1)
def _hog_detector():
    cv2 = import_optional("cv2")  # the `video` extra
    hog = cv2.HOGDescriptor()  # the default 64x128 window of Dalal and Triggs
    hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
    return hog


def _hog(rgb: np.ndarray, min_score: float, min_side: int = 480) -> list[tuple[Box, float]]:
    cv2 = import_optional("cv2")  # the `video` extra
    # Its window is 128 px tall and it only scales the image down: enlarge small images so that the people
    # of a person-sized crop fit it.
    factor = max(1.0, min_side / min(rgb.shape[:2]))
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    if factor > 1:
        grey = cv2.resize(grey, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    rects, weights = _hog_detector().detectMultiScale(grey, winStride=(8, 8), padding=(8, 8), scale=1.05)
    return [(tuple(int(round(v / factor)) for v in rect), float(weight))
            for rect, weight in zip(np.asarray(rects).reshape(-1, 4), np.ravel(weights)) if weight >= min_score]


# --- Haar cascade ------------------------------------------------------------------------------------------

def cascade_path() -> Path:
    """Where the bundled frontal-face cascade is, or a DunetError saying why there is none."""
    cv2 = import_optional("cv2")  # the `video` extra
    folder = getattr(getattr(cv2, "data", None), "haarcascades", None)
    if not hasattr(cv2, "CascadeClassifier") or folder is None:
        raise DunetError(f"OpenCV {cv2.__version__} has no Haar cascade classifier (OpenCV 5 removed it); "
                         f"{INSTALL_HINT}, or give the face box with --box")
    path = Path(folder) / CASCADE_FILE
    if not path.is_file():
        raise DunetError(f"OpenCV {cv2.__version__} does not ship {CASCADE_FILE} in {folder}; {INSTALL_HINT}")
    return path


@lru_cache(maxsize=1)
def _classifier(path: str):
    import cv2

    classifier = cv2.CascadeClassifier(path)
    if classifier.empty():
        raise DunetError(f"{path}: OpenCV cannot load this cascade file")
    return classifier


def _haar(rgb: np.ndarray, min_size: int = 24) -> list[Box]:
    cv2 = import_optional("cv2")  # the `video` extra
    classifier = _classifier(str(cascade_path()))
    grey = cv2.equalizeHist(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY))  # the cascade was trained on normalised faces
    found = classifier.detectMultiScale(grey, scaleFactor=1.1, minNeighbors=5, minSize=(min_size, min_size))
    return [tuple(int(v) for v in box) for box in np.asarray(found).reshape(-1, 4)]


# --- measurement -------------------------------------------------------------------------------------------

def miss_rate(folder: str | Path, detector: str = "blazeface") -> dict:
    """Share of the annotated faces of a 300-W-style folder (NAME.jpg + NAME.pts) that no box finds, where
    a box finds a face when it contains the face's annotated nose tip and overlaps its landmark box by an
    IoU of at least 0.3. Also: how a found box relates to the landmark box (median side ratio and centre
    offset in box sides), which `dunet.api` uses to turn a detector box into a landmark crop."""
    from dunet.data.images import load_image
    from dunet.data.readers import parse_pts

    files = sorted(Path(folder).glob("*.pts"))
    if not files:
        raise DunetError(f"{folder}: no .pts files")
    missed, ratios, offsets = [], [], []
    for pts_file in files:
        points = parse_pts(pts_file)[:, :2] - 1.0  # 1-based to 0-based pixels
        image_file = next((p for p in (pts_file.with_suffix(s) for s in (".jpg", ".png")) if p.is_file()), None)
        if image_file is None:
            continue
        lo, hi = points.min(0), points.max(0)
        truth = np.array([*lo, *hi])
        nose = points[30]
        hit = None
        for x, y, w, h in detect_faces(load_image(image_file), detector=detector):
            box = np.array([x, y, x + w, y + h], float)
            if box[0] <= nose[0] <= box[2] and box[1] <= nose[1] <= box[3] and _iou(truth, box[None])[0] >= 0.3:
                hit = box
                break
        if hit is None:
            missed.append(image_file.name)
            continue
        side = max(*(hi - lo))
        ratios.append(max(hit[2] - hit[0], hit[3] - hit[1]) / side)
        offsets.append(((hi + lo) / 2 - (hit[:2] + hit[2:]) / 2) / side)
    total = len(missed) + len(ratios)
    return {"detector": detector, "faces": total, "missed": len(missed), "miss_rate": len(missed) / max(total, 1),
            "side_ratio": float(np.median(ratios)) if ratios else None,
            "centre_offset": np.median(offsets, axis=0).round(4).tolist() if offsets else None,
            "missed_files": missed[:20]}


if __name__ == "__main__":  # python -m dunet.runtime.detect FOLDER [DETECTOR...]
    import json
    import sys

    for name in sys.argv[2:] or DETECTORS:
        print(json.dumps(miss_rate(sys.argv[1], name)))
