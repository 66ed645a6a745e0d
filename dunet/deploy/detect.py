"""Offline face boxes for `dunet predict` on faces without a given box: OpenCV's Haar cascade.

The cascade XML files ship inside the opencv-python(-headless) 4.x wheels (cv2.data.haarcascades), so
nothing is downloaded. OpenCV 5 dropped the cascade classifier and its files: with it, or without
OpenCV, `detect_faces` raises a DunetError that says what to install.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from dunet import DunetError

CASCADE_FILE = "haarcascade_frontalface_default.xml"
INSTALL_HINT = "install it with: pip install 'opencv-python-headless>=4.9,<5'"

Box = tuple[int, int, int, int]  # x, y, width, height in image pixels


def cascade_path() -> Path:
    """Where the bundled frontal-face cascade is, or a DunetError saying why there is none."""
    try:
        import cv2
    except ImportError:
        raise DunetError(f"face detection needs OpenCV with its Haar cascades; {INSTALL_HINT}") from None
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


def detect_faces(image: np.ndarray, *, min_size: int = 24, scale_factor: float = 1.1,
                 min_neighbors: int = 5) -> list[Box]:
    """Frontal faces in an RGB (H, W, 3) or grey (H, W) uint8 image as (x, y, w, h) boxes, largest
    first. `min_size`: smallest face side in pixels; `min_neighbors`: higher = fewer, surer boxes."""
    import cv2

    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (image.ndim == 3 and image.shape[2] not in (3, 4)):
        raise DunetError(f"detect_faces: expected an RGB or grey uint8 image, got {image.dtype} {image.shape}")
    classifier = _classifier(str(cascade_path()))
    grey = image if image.ndim == 2 else cv2.cvtColor(np.ascontiguousarray(image[..., :3]), cv2.COLOR_RGB2GRAY)
    grey = cv2.equalizeHist(grey)  # the cascade was trained on contrast-normalised faces
    found = classifier.detectMultiScale(grey, scaleFactor=scale_factor, minNeighbors=min_neighbors,
                                        minSize=(min_size, min_size))
    boxes = [tuple(int(v) for v in box) for box in np.asarray(found).reshape(-1, 4)]
    return sorted(boxes, key=lambda b: b[2] * b[3], reverse=True)
