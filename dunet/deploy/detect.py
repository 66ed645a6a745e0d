"""Offline face boxes for faces without a given box: MediaPipe's BlazeFace (default) or OpenCV's Haar cascade.

BlazeFace (short range, 128x128 input; Apache-2.0, the file `face_detection_short_range.tflite` of the
mediapipe 0.10.14 wheel) ships in `dunet/pretrained/` (224 KB) and runs through OpenCV's own TFLite reader
(cv2.dnn), so it needs no package beyond OpenCV. On the 1,207 faces of ../shared/data/300w it misses none,
the Haar cascade 149 (12.3 %): `python -m dunet.deploy.detect ../shared/data/300w` (docs/api.md). Those
images are face crops; BlazeFace short range is made for faces that fill a good part of the picture
(portraits, selfies, webcams): for small faces in a large photo give a box per face.

The Haar cascade ships inside the opencv-python(-headless) 4.x wheels (cv2.data.haarcascades). OpenCV 5
dropped it: with it, or without OpenCV, `detect_faces(..., detector="haar")` raises a DunetError that says
what to install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from dunet import DunetError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
BLAZEFACE_FILE = Path(__file__).resolve().parents[1] / "pretrained" / "blazeface_short_range.tflite"
INSTALL_HINT = "install it with: pip install 'opencv-python-headless>=4.9,<5'"
DETECTORS = ("blazeface", "haar")

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels


def _cv2():
    try:
        import cv2
    except ImportError:
        raise DunetError(f"face detection needs OpenCV; {INSTALL_HINT}") from None
    return cv2


def _check_image(image) -> np.ndarray:
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DunetError(f"detect_faces: expected an RGB or grey uint8 image, got {image.dtype} {image.shape}")
    if image.ndim == 2:
        return np.repeat(image[:, :, None], 3, axis=2)
    return np.ascontiguousarray(image[..., :3])


def detect_faces(image: np.ndarray, *, detector: str = "blazeface", min_score: float = 0.5) -> list[Box]:
    """Faces in an RGB (H, W, 3) or grey (H, W) uint8 image as (x, y, w, h) boxes, largest first.
    `detector`: "blazeface" (default; `min_score` is its confidence threshold) or "haar"."""
    if detector not in DETECTORS:
        raise DunetError(f"face detector {detector!r}: choose one of {', '.join(DETECTORS)}")
    rgb = _check_image(image)
    boxes = _blazeface(rgb, min_score) if detector == "blazeface" else _haar(rgb)
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)


# --- BlazeFace ---------------------------------------------------------------------------------------------

BLAZE_SIZE = 128


@lru_cache(maxsize=1)
def _blazeface_net():
    cv2 = _cv2()
    if not BLAZEFACE_FILE.is_file():
        raise DunetError(f"{BLAZEFACE_FILE}: the face detector model is missing from the installation")
    if not hasattr(cv2.dnn, "readNetFromTFLite"):
        raise DunetError(f"OpenCV {cv2.__version__} cannot read TFLite models (4.8 or later can); {INSTALL_HINT}")
    return cv2.dnn.readNetFromTFLite(str(BLAZEFACE_FILE))


@lru_cache(maxsize=1)
def _blazeface_anchors() -> np.ndarray:
    """(896, 2) anchor centres in [0, 1] of the short-range model: 2 per cell of the 16x16 grid (stride 8),
    then 6 per cell of the 8x8 grid (its three stride-16 layers share one grid)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        cells = np.stack([(xs.ravel() + 0.5) / grid, (ys.ravel() + 0.5) / grid], axis=1)
        centres.append(np.repeat(cells, per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _blazeface(rgb: np.ndarray, min_score: float) -> list[Box]:
    cv2 = _cv2()
    height, width = rgb.shape[:2]
    # Letterbox to a square, as MediaPipe does, so faces keep their shape.
    side = max(height, width)
    pad_x, pad_y = (side - width) / 2, (side - height) / 2
    square = cv2.copyMakeBorder(rgb, int(pad_y), side - height - int(pad_y), int(pad_x), side - width - int(pad_x),
                                cv2.BORDER_CONSTANT, value=(0, 0, 0))
    small = cv2.resize(square, (BLAZE_SIZE, BLAZE_SIZE), interpolation=cv2.INTER_AREA)
    blob = (small.astype(np.float32) / 127.5 - 1.0).transpose(2, 0, 1)[None]  # [-1, 1], NCHW for cv2.dnn
    net = _blazeface_net()
    net.setInput(blob)
    raw_scores, raw_boxes = net.forward(["classificators", "regressors"])
    scores = 1 / (1 + np.exp(-np.clip(raw_scores.reshape(-1).astype(np.float64), -100, 100)))
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


def _weighted_nms(corners: np.ndarray, scores: np.ndarray, iou_threshold: float = 0.3) -> list[np.ndarray]:
    """MediaPipe's weighted suppression: each cluster of overlapping boxes becomes their score-weighted mean."""
    order = np.argsort(-scores)
    corners, scores = corners[order], scores[order]
    merged = []
    remaining = np.ones(len(scores), bool)
    while remaining.any():
        first = int(np.argmax(remaining))
        ious = _iou(corners[first], corners)
        cluster = remaining & (ious > iou_threshold)
        weights = scores[cluster][:, None]
        merged.append((corners[cluster] * weights).sum(0) / weights.sum())
        remaining &= ~cluster
    return merged


def _iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    x0, y0 = np.maximum(box[0], boxes[:, 0]), np.maximum(box[1], boxes[:, 1])
    x1, y1 = np.minimum(box[2], boxes[:, 2]), np.minimum(box[3], boxes[:, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
    return inter / np.maximum(area(box) + area(boxes) - inter, 1e-9)


# --- Haar cascade ------------------------------------------------------------------------------------------

def cascade_path() -> Path:
    """Where the bundled frontal-face cascade is, or a DunetError saying why there is none."""
    cv2 = _cv2()
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
    cv2 = _cv2()
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


if __name__ == "__main__":  # python -m dunet.deploy.detect FOLDER [DETECTOR...]
    import json
    import sys

    for name in sys.argv[2:] or DETECTORS:
        print(json.dumps(miss_rate(sys.argv[1], name)))
