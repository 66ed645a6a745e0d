"""The offline face detectors: BlazeFace (default) and the Haar cascade."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dunet import DunetError
from dunet.deploy import detect


def _cascade_or_skip():
    try:
        return detect.cascade_path()
    except DunetError as err:
        pytest.skip(str(err))


def test_finds_the_face_in_a_real_300w_image(shared_data):
    _cascade_or_skip()
    from dunet.data.readers import parse_pts

    path = sorted((shared_data / "300w").glob("helen_train_*.jpg"))[0]
    image = np.asarray(Image.open(path).convert("RGB"))
    boxes = detect.detect_faces(image, detector="haar")
    assert boxes, f"no face found in {path.name}"
    x, y, w, h = boxes[0]
    assert all(a[2] * a[3] >= b[2] * b[3] for a, b in zip(boxes, boxes[1:]))  # largest first
    # The annotated nose tip (iBUG point 31) lies inside the largest box.
    nose = parse_pts(path.with_suffix(".pts"))[30] - 1
    assert x <= nose[0] <= x + w and y <= nose[1] <= y + h


def test_no_face_in_a_flat_image():
    _cascade_or_skip()
    assert detect.detect_faces(np.full((120, 160, 3), 128, np.uint8), detector="haar") == []


def test_bad_images_are_dunet_errors():
    _cascade_or_skip()
    with pytest.raises(DunetError, match="uint8"):
        detect.detect_faces(np.zeros((32, 32, 3), np.float32))
    with pytest.raises(DunetError, match="uint8"):
        detect.detect_faces(np.zeros((32, 32, 5), np.uint8))


def test_missing_cascade_support_is_a_clear_error(monkeypatch):
    import cv2

    monkeypatch.delattr(cv2, "CascadeClassifier", raising=False)
    with pytest.raises(DunetError, match="opencv-python-headless>=4.9,<5"):
        detect.cascade_path()


def test_blazeface_finds_faces_haar_misses(shared_data):
    """BlazeFace (the default) on 300-W faces the Haar cascade misses (python -m dunet.deploy.detect)."""
    from dunet.data.readers import parse_pts

    for name in ("afw_111076519_2", "afw_1372188757_1", "afw_156474078_1"):
        path = shared_data / "300w" / f"{name}.jpg"
        image = np.asarray(Image.open(path).convert("RGB"))
        nose = parse_pts(path.with_suffix(".pts"))[30] - 1
        boxes = detect.detect_faces(image)
        assert any(x <= nose[0] <= x + w and y <= nose[1] <= y + h for x, y, w, h in boxes), name


def test_blazeface_sees_no_face_in_flat_or_noise_images():
    rng = np.random.default_rng(0)
    assert detect.detect_faces(np.full((120, 160, 3), 128, np.uint8)) == []
    assert detect.detect_faces(rng.integers(0, 255, (90, 70, 3), dtype=np.uint8)) == []
    with pytest.raises(DunetError, match="face detector 'yolo'"):
        detect.detect_faces(np.zeros((32, 32, 3), np.uint8), detector="yolo")
