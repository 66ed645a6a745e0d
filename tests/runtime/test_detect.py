"""The offline face detectors: BlazeFace (default) and the Haar cascade."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from dunet import DunetError
from dunet.runtime import detect


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
    with pytest.raises(DunetError, match=r"pip install 'dunet\[video\]'"):
        detect.cascade_path()


def test_blazeface_finds_faces_haar_misses(shared_data):
    """BlazeFace (the default) on 300-W faces the Haar cascade misses (python -m dunet.runtime.detect)."""
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


# --- people ------------------------------------------------------------------------------------------------

def _lsp_person(shared_data, number: int):
    """An LSP image and its 14 joints (0-based pixels)."""
    import scipy.io

    joints = scipy.io.loadmat(str(shared_data / "lsp" / "joints.mat"))["joints"][:2, :, number - 1].T - 1
    image = np.asarray(Image.open(shared_data / "lsp" / "images" / f"im{number:04d}.jpg").convert("RGB"))
    return image, joints


def _holds(box, joints, share: float = 0.8) -> bool:
    x, y, w, h = box
    return (((joints >= [x, y]) & (joints <= [x + w, y + h])).all(1)).mean() >= share


def test_finds_the_person_in_real_lsp_images(shared_data):
    """BlazePose's first box holds at least 80 % of the person's joints (bench/person_detect.py: 80 % of the
    1,000 LSP images pass)."""
    for number in (1, 2, 6, 9):
        image, joints = _lsp_person(shared_data, number)
        boxes = detect.detect_people(image)
        assert boxes and _holds(boxes[0], joints), (number, boxes)
        x, y, w, h = boxes[0]
        assert max(w, h) <= 2 * np.ptp(joints, axis=0).max()  # a body box, not the whole picture


def test_finds_a_small_person_pasted_into_a_large_scene(shared_data):
    """A 180 px person in a 1280x960 picture: too small for the whole-image pass alone, found by the squares."""
    import cv2

    image, joints = _lsp_person(shared_data, 1)
    factor = 180 / np.ptp(joints[:, 1])
    person = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
    rng = np.random.default_rng(0)
    scene = np.clip(np.linspace(60, 200, 1280)[None, :, None] + rng.normal(0, 8, (960, 1280, 1)), 0, 255)
    scene = np.repeat(scene, 3, axis=2).astype(np.uint8)
    x, y = 900, 500
    scene[y: y + person.shape[0], x: x + person.shape[1]] = person
    boxes = detect.detect_people(scene)
    assert any(_holds(box, joints * factor + [x, y]) for box in boxes), boxes
    assert len(boxes) <= 2


def test_each_person_comes_with_its_score_most_confident_first(shared_data):
    image, joints = _lsp_person(shared_data, 2)
    scored = detect.scored_people(image)
    assert [box for box, _ in scored] == detect.detect_people(image)
    scores = [score for _, score in scored]
    assert scores and all(0.5 <= s <= 1.0 for s in scores) and scores == sorted(scores, reverse=True)
    assert detect.scored_people(np.full((240, 320, 3), 128, np.uint8)) == []


def test_nobody_in_plain_images():
    rng = np.random.default_rng(0)
    assert detect.detect_people(np.full((480, 640, 3), 128, np.uint8)) == []
    assert detect.detect_people(rng.integers(0, 255, (300, 200), dtype=np.uint8)) == []  # grey noise
    assert detect.detect_people(np.full((120, 160, 3), 30, np.uint8), detector="hog") == []


def test_bad_input_to_the_person_detector_is_one_line():
    for bad in (np.zeros((32, 32, 3), np.float32), np.zeros((0, 40, 3), np.uint8)):
        with pytest.raises(DunetError, match="detect_people: expected an RGB or grey uint8 image"):
            detect.detect_people(bad)
    with pytest.raises(DunetError, match="person detector 'yolo'"):
        detect.detect_people(np.zeros((32, 32, 3), np.uint8), detector="yolo")
    with pytest.raises(DunetError, match="tiles"):
        detect.detect_people(np.zeros((32, 32, 3), np.uint8), tiles=(0,))
    with pytest.raises(DunetError, match=r"step must be a fraction of a square in \(0, 1\], got 0"):
        detect.detect_people(np.zeros((32, 32, 3), np.uint8), step=0)


def test_a_person_filling_the_photo_is_found_by_a_second_look_framed(shared_data):
    """LSP image 626: the plain pass sees nobody (the person fills the picture), the framed one finds them."""
    image, joints = _lsp_person(shared_data, 626)
    _, plain_scores = detect._pose_window(image)
    assert not (plain_scores >= 0.5).any()
    boxes = detect.detect_people(image)
    assert len(boxes) == 1 and _holds(boxes[0], joints), boxes


def test_boxes_of_parts_of_a_person_are_dropped():
    whole = ((0.0, 0.0, 100.0, 200.0), 0.9)
    part = ((20.0, 20.0, 60.0, 80.0), 0.6)  # inside the whole person, less confident
    surer_part = ((20.0, 120.0, 60.0, 180.0), 0.95)  # inside, but more confident than the whole: kept
    neighbour = ((90.0, 0.0, 190.0, 200.0), 0.7)  # overlaps a tenth of its area: kept
    assert detect._drop_parts([whole, part, surer_part, neighbour]) == [whole, surer_part, neighbour]
    assert detect._drop_parts([]) == []


def test_squares_only_where_they_show_people_larger():
    assert detect._square_sides(960, 1280, (1, 1.5, 2)) == [960, 640, 480]  # a 4:3 photo: 1.33x, 2x, 2.67x
    assert detect._square_sides(960, 1280, (3, 8, 9)) == [320, 120]  # a ninth, 106 px, cannot hold a person
    assert detect._square_sides(140, 126, (1, 2)) == []  # squares of 126 px show a 140 px picture 1.11x larger
    assert detect._square_sides(300, 200, (1, 2)) == [200]  # 1.5x; squares of 100 px cannot hold a person
    assert detect._square_sides(290, 190, (1, 2)) == []  # a person the whole image hides is under 100 px
    assert detect._square_sides(400, 400, (1, 2)) == [200]  # the whole image is no square of its own


def test_squares_lie_a_step_apart_and_the_last_one_flush_with_the_edge():
    assert detect._starts(1280, 480) == [0, 240, 480, 720, 800]  # half a square apart
    assert detect._starts(1280, 480, 1 / 3) == [0, 160, 320, 480, 640, 800]
    assert detect._starts(960, 320, 1 / 3) == [0, 106, 212, 318, 424, 530, 636, 640]
    assert detect._starts(400, 480) == [0]


def test_the_detector_reads_an_input_laid_out_in_any_order():
    """OpenVINO shares the input's memory: a copy made to lay it out row by row must outlive the request (a
    transposed input once gave BlazeFace freed memory, and it found no face)."""
    blob = np.random.default_rng(0).uniform(-1, 1, (1, detect.BLAZE_SIZE, detect.BLAZE_SIZE, 3)).astype(np.float32)
    network = detect._network(detect.BLAZEFACE_FILE, 1)
    expected = {name: value.copy() for name, value in network(blob).items()}
    transposed = np.ascontiguousarray(blob.transpose(0, 2, 1, 3)).transpose(0, 2, 1, 3)  # same values, columns first
    assert not transposed.flags["C_CONTIGUOUS"]
    for name, value in network(transposed).items():
        np.testing.assert_array_equal(value, expected[name])
