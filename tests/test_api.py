"""The Python API: dunet.load(...).predict(...), boxes, batches, scores, backends, bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dunet
from dunet import DunetError
from dunet.api import SURE_WITHIN, Landmarker, as_rgb, box_around, check_box, landmark_box, prominent_first


def tiny_landmarker(**options) -> Landmarker:
    """A random 68-landmark DU-Net at 64 px: enough to exercise the pipeline, no training needed."""
    from dunet.data.synthetic import synthetic_source
    from dunet.engine.config import config_from_dict
    from dunet.engine.inference import torch_model
    from dunet.models import build_model
    from tests.engine.conftest import TINY

    config = config_from_dict(TINY)
    model = build_model(config.model)
    runner = torch_model(model, config, synthetic_source(1).spec, precision="fp32", device="cpu")
    return Landmarker(runner, **options)


@pytest.fixture(scope="module")
def tiny():
    return tiny_landmarker()


def face_image(index: int = 0) -> np.ndarray:
    from dunet.data.synthetic import render_face

    return render_face(3, index, size=96)


def test_import_dunet_stays_light():
    code = "import sys, dunet; assert callable(dunet.load); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_every_shipped_model_predicts_without_pytorch(tmp_path):
    """The runtime: a face model finds its face, the packed 1-bit files run, PyTorch is never imported, and OpenCV
    (the `video` extra) is not needed."""
    from PIL import Image

    from dunet.data.synthetic import render_face

    Image.fromarray(render_face(3, 0, size=160)).save(tmp_path / "face.png")
    code = f"""
import sys
sys.modules["cv2"] = None  # as in `pip install dunet`: importing OpenCV fails
import numpy as np
import dunet
from dunet.runtime.pretrained import list_pretrained
for entry in list_pretrained():
    landmarker = dunet.load(entry["name"], threads=1)
    result = landmarker.predict({str(tmp_path / "face.png")!r}, box=(20, 20, 120, 120))
    assert np.isfinite(result.points).all() and landmarker.runner.backend == "openvino", entry["name"]
    assert landmarker.detector == {{"face": "blazeface", "pose": "blazepose"}}[entry["task"]], entry["name"]
    assert landmarker.draw(np.zeros((160, 160, 3), np.uint8), result).any(), entry["name"]
assert dunet.load("face").predict(np.full((120, 160, 3), 128, np.uint8)) is None
assert dunet.load("pose").predict_all(np.full((120, 160, 3), 128, np.uint8)) == []
print("torch" in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "False"


def test_predict_one_box_returns_points_scores_names(tiny):
    image = face_image()
    result = tiny.predict(image, box=(20, 20, 50, 50))
    assert result.points.shape == (68, 2) and result.scores.shape == (68,)
    assert len(result.names) == 68 and result.names == tiny.names
    assert ((result.scores >= 0) & (result.scores <= 1)).all()
    assert result.box == (20.0, 20.0, 50.0, 50.0)
    # The crop is the box with the spec's margin: points land around the box, not across the whole image.
    centre = result.points.mean(0)
    assert np.all(np.abs(centre - 45) < 45 * tiny.spec.box_margin)


def test_same_prediction_from_array_pil_and_path(tiny, tmp_path):
    from PIL import Image

    image = face_image(1)
    path = tmp_path / "face.png"
    Image.fromarray(image).save(path)
    a = tiny.predict(image, box=(10, 10, 70, 70))
    b = tiny.predict(Image.fromarray(image), box=(10, 10, 70, 70))
    c = tiny.predict(path, box=(10, 10, 70, 70))
    d = tiny.predict(image.astype(np.float32) / 255, box=(10, 10, 70, 70))
    for other in (b, c, d):
        np.testing.assert_allclose(other.points, a.points, atol=1e-4)


def test_boxes_and_batches_match_single_calls(tiny):
    images = [face_image(i) for i in range(3)]
    boxes = [(10, 10, 60, 60), (30, 20, 40, 50)]
    many = tiny.predict(images[0], boxes=boxes)
    assert [r.box for r in many] == [tuple(map(float, b)) for b in boxes]
    for box, result in zip(boxes, many):
        np.testing.assert_allclose(tiny.predict(images[0], box=box).points, result.points, atol=1e-4)
    small_batches = tiny_landmarker(batch_size=2)
    small_batches.runner = tiny.runner
    batched = small_batches.predict_batch(images, boxes=[boxes, None, [boxes[1]]])
    assert [len(r) for r in batched] == [2, 1, 1]
    assert batched[1][0].box == (0.0, 0.0, 96.0, 96.0)  # no box: the whole image
    np.testing.assert_allclose(batched[2][0].points, tiny.predict(images[2], box=boxes[1]).points, atol=1e-4)


def test_bad_boxes_and_images_are_one_line_errors(tiny):
    image = face_image()
    for box, words in (((float("nan"), 0, 10, 10), "not a finite"), ((0, 0, float("inf"), 10), "not a finite"),
                       ((500, 500, 10, 10), "outside the 96x96 image"), ((0, 0, -5, 10), "positive"),
                       ((0, 0, 1e9, 1e9), "10 times"), ((1, 2, 3), "four numbers")):
        with pytest.raises(DunetError, match=words):
            tiny.predict(image, box=box)
    with pytest.raises(DunetError, match="shape"):
        tiny.predict(np.zeros((4, 5, 6, 3), np.uint8))
    with pytest.raises(DunetError, match=r"\[0, 1\]"):
        tiny.predict(np.full((8, 8, 3), 3.0, np.float32))
    with pytest.raises(DunetError, match="batch size"):
        tiny_landmarker(batch_size=0)
    with pytest.raises(DunetError, match="not-a-model"):
        dunet.load("not-a-model")


def test_helpers():
    assert check_box([1, 2, 3, 4], 10, 10) == (1.0, 2.0, 3.0, 4.0)
    assert box_around(np.array([[1, 2], [5, 8], [100, 100]]), np.array([0.9, 0.8, 0.1]), 0.5) == (1, 2, 4, 6)
    assert box_around(np.array([[1, 2], [5, 8]]), np.array([0.1, 0.1]), 0.5) is None
    x, y, w, h = landmark_box((0, 0, 103, 103), "blazeface")
    assert w == pytest.approx(100.4, abs=0.1) and y > 0  # the landmark box sits lower than the detector's
    assert as_rgb(np.zeros((5, 6), np.uint8)).shape == (5, 6, 3)


def test_scores_are_clipped_heatmap_peaks():
    from dunet.runtime.model import LandmarkModel

    lm = tiny_landmarker()
    runner = lm.runner
    heat = torch.zeros(1, 68, 16, 16)
    heat[0, :, 5, 5] = torch.linspace(-0.5, 1.5, 68)
    runner.heatmaps = lambda images, flip=False: heat
    _, scores = LandmarkModel.predict_crops(runner, torch.zeros(1, 3, 64, 64), torch.eye(2, 3)[None])
    assert scores.min() == 0.0 and scores.max() == 1.0
    np.testing.assert_allclose(scores[0, 34], float(heat[0, 34, 5, 5].clamp(0, 1)), atol=1e-6)


def test_nan_heatmaps_never_leave_as_points():
    """A damaged network (here: its weights NaN in memory, past the check at load) is a one-line error, not
    points at one place with a score of NaN."""
    lm = tiny_landmarker()
    with torch.no_grad():
        next(lm.runner.model.parameters()).fill_(float("nan"))
    with pytest.raises(DunetError, match="the network's heatmaps hold NaN or infinite values for 1 of 1 crop"):
        lm.predict(face_image(), box=(10, 10, 70, 70))


def test_confidence_auc():
    from dunet.metrics import confidence_auc

    errors = np.array([[0.01, 0.02, 0.5, 0.9]])
    assert confidence_auc([[0.9, 0.8, 0.2, 0.1]], errors, 0.1) == 1.0  # good points score higher
    assert confidence_auc([[0.1, 0.2, 0.8, 0.9]], errors, 0.1) == 0.0
    assert confidence_auc([[0.5, 0.5, 0.5, 0.5]], errors, 0.1) == 0.5
    assert confidence_auc([[0.9, 0.8, 0.2, 0.1]], errors, 5.0) is None  # no bad points
    assert confidence_auc([0.9, 0.1, 0.3], [0.01, np.nan, 0.5], 0.1) == 1.0  # NaN = unlabelled


@pytest.fixture(scope="module")
def face_300w(shared_data):
    from dunet.data.readers import parse_pts

    path = shared_data / "300w" / "afw_1051618982_1.jpg"
    points = parse_pts(path.with_suffix(".pts"))[:, :2] - 1.0  # 1-based to 0-based pixels
    lo, hi = points.min(0), points.max(0)
    return path, points, (lo[0], lo[1], hi[0] - lo[0], hi[1] - lo[1])


def test_pretrained_face_model_on_a_real_300w_face(face_300w):
    path, truth, box = face_300w
    result = dunet.load("300w-dunet4", backend="torch", precision="fp32").predict(path, box=box)
    error = np.linalg.norm(result.points - truth, axis=1)
    assert np.median(error) < 4.0 and error.mean() < 5.0, error.mean()  # a 160 px face
    assert result.scores.mean() > 0.5


def test_detect_faces_finds_the_face_and_maps_its_box(face_300w):
    path, truth, box = face_300w
    face = dunet.load("300w-dunet4", backend="torch", precision="fp32", detect_faces=True)
    result = face.predict(path)
    assert result is not None
    assert np.median(np.linalg.norm(result.points - truth, axis=1)) < 5.0
    assert face.predict(np.full((120, 160, 3), 128, np.uint8)) is None  # no face: None, like face-alignment


def test_load_with_no_name_is_the_default_face_model_and_finds_faces_itself(face_300w, tiny, tmp_path):
    from dunet.checkpoint import save_checkpoint
    from dunet.runtime.pretrained import default_models

    path, truth, _ = face_300w
    face = dunet.load(backend="torch", precision="fp32")
    assert Path(face.runner.source).stem == default_models()["face"] and face.detect_faces
    result = face.predict(path)  # no box: the detected face, like face-alignment's one call
    assert np.median(np.linalg.norm(result.points - truth, axis=1)) < 5.0
    assert dunet.load("pose", backend="torch").finds == "person"  # a pose model finds people
    own = save_checkpoint(tmp_path / "own.safetensors", tiny.runner.model, tiny.runner.card)
    assert not dunet.load(own, backend="torch").detect_faces  # a user's model: as before, unless asked
    assert not dunet.load(backend="torch", detect_faces=False).detect_faces


@pytest.mark.slow
def test_auto_backend_builds_the_network_without_pytorch_and_onnx_converts_once(face_300w, tmp_path, monkeypatch):
    pytest.importorskip("onnxruntime")
    from dunet.engine import exported

    monkeypatch.setenv("DUNET_CACHE", str(tmp_path))
    path, _, box = face_300w
    reference = dunet.load("300w-dunet4", backend="torch", precision="fp32").predict(path, box=box)
    calls = []
    real_export = exported.cached_export

    def counting(runner):
        calls.append(1)
        return real_export(runner)

    monkeypatch.setattr(exported, "cached_export", counting)
    auto = dunet.load("300w-dunet4", precision="fp32")  # OpenVINO builds it from the weights: nothing exported
    assert auto.runner.backend == "openvino" and not calls and not list(tmp_path.glob("*.onnx"))
    onnx = dunet.load("300w-dunet4", backend="onnx", precision="fp32")  # onnxruntime needs the ONNX file, once
    again = dunet.load("300w-dunet4", backend="onnx", precision="fp32")
    assert len(calls) == 2 and len(list(tmp_path.glob("*.onnx"))) == 1  # the second load reuses the file
    for landmarker in (auto, onnx, again):
        result = landmarker.predict(path, box=box)
        assert np.abs(result.points - reference.points).max() < 0.05
        assert np.abs(result.scores - reference.scores).max() < 1e-3


def test_a_large_photo_is_decoded_reduced_and_gives_its_full_resolution_points(tmp_path, monkeypatch):
    """A 3,072 px photo is decoded at 1/8 of its size, and EXIF turns it: the same points as from its full-size
    pixels, to a median 0.1 % and at most 0.75 % of the image size (a pixel of the 128 px crop is 0.6-0.8 %;
    moving the box by 2 px at full size moves single points by up to 0.35 %, and the largest difference measured
    here was 0.50 %)."""
    import cv2
    from PIL import Image

    from dunet.data import images
    from dunet.data.synthetic import render_face

    side = 3072
    upright = cv2.resize(render_face(0, 2, 256), (side, side), interpolation=cv2.INTER_CUBIC)
    path = tmp_path / "large.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6  # stored turned a quarter to the left: a viewer turns it back
    Image.fromarray(np.ascontiguousarray(np.rot90(upright))).save(path, quality=95, exif=exif)
    factors = []
    real_load = images.load_reduced
    monkeypatch.setattr(images, "load_reduced", lambda *a, **k: factors.append(a[1]) or real_load(*a, **k))
    face = dunet.load("300w-dunet4", backend="torch", precision="fp32", detect_faces=False)  # box None: whole image
    full_size = as_rgb(path)
    for box in (None, (600, 500, 1900, 2100)):
        expected = face.predict(full_size, box=box)
        found = face.predict(path, box=box)
        error = np.abs(found.points - expected.points)
        assert found.box == expected.box and np.median(error) < 0.001 * side and error.max() < 0.0075 * side
    assert factors == [1, 8, 8]  # as_rgb's full-size decode, then the whole image and the box


def test_draw_marks_the_points_on_a_copy_and_a_result_reads_short(tiny):
    image = face_image()
    before = image.copy()
    result = tiny.predict(image, box=(20, 20, 50, 50))
    drawn = tiny.draw(image, result)
    assert drawn.shape == image.shape and drawn.dtype == np.uint8
    np.testing.assert_array_equal(image, before)  # the caller's image is left alone
    x, y = np.round(result.points[np.argmax(result.scores)]).astype(int)
    near = (slice(y - 2, y + 3), slice(x - 2, x + 3))  # an unsure point is a ring around it
    assert (drawn[near] != image[near]).any()  # a point is drawn where it was found
    np.testing.assert_array_equal(tiny.draw(image, None), image)  # nothing found: the image as it was
    assert tiny.draw(image, [result, result]).shape == image.shape
    text = repr(result)
    assert text.startswith("Landmarks(68 points, mean score ") and "box (20, 20, 50, 50)" in text and len(text) < 80


@pytest.mark.slow
def test_a_file_exported_from_a_face_model_finds_faces_like_it(tmp_path):
    from dunet.cli import main

    onnx = tmp_path / "face.onnx"
    assert main(["export", "--model", "face", "--format", "onnx", "--exporter", "torchscript", "--out", str(onnx)]) == 0
    exported = dunet.load(onnx, backend="onnx", threads=1)
    assert exported.detect_faces  # its model card keeps the shipped model's task
    assert exported.predict(np.full((120, 160, 3), 128, np.uint8)) is None  # no face: None, as the shipped one
    assert not dunet.load(onnx, backend="onnx", threads=1, detect_faces=False).detect_faces


# --- people: a pose model finds them itself -----------------------------------------------------------------

def lsp_scene(shared_data, *numbers: int, size=(480, 640)) -> tuple[np.ndarray, list[np.ndarray]]:
    """LSP images pasted side by side into a plain grey scene, each scaled to half its height: people in a
    larger picture, as in the wild; with each person's 14 joints in scene pixels."""
    import cv2

    from dunet.data.images import load_image
    from dunet.data.readers import read_lsp

    samples = read_lsp(shared_data / "lsp", layout="lsp").samples
    scene = np.full((*size, 3), 100, np.uint8)
    truths, left = [], 50
    for number in numbers:
        sample = samples[number - 1]
        image = load_image(sample.image_path)
        factor = size[0] / 2 / image.shape[0]
        small = cv2.resize(image, None, fx=factor, fy=factor, interpolation=cv2.INTER_AREA)
        scene[100: 100 + small.shape[0], left: left + small.shape[1]] = small
        truths.append((sample.keypoints + 0.5) * factor - 0.5 + [left, 100])
        left += small.shape[1] + 80
    return scene, truths


@pytest.fixture(scope="module")
def pose():
    return dunet.load("pose", threads=1)


def torso_errors(points: np.ndarray, joints: np.ndarray) -> np.ndarray:
    return np.linalg.norm(points - joints, axis=1) / np.linalg.norm(joints[8] - joints[3])  # LSP's torso


def test_a_pose_model_finds_the_person_in_a_larger_photo(pose, shared_data):
    scene, (joints,) = lsp_scene(shared_data, 2)
    assert pose.finds == "person"
    person = pose.predict(scene)  # no box: the person detector's
    assert person is not None and 0.5 <= person.detection_score <= 1.0
    assert np.median(torso_errors(person.points, joints)) < 0.3
    lo, hi = joints.min(0), joints.max(0)
    given = pose.predict(scene, box=(*lo, *(hi - lo)))  # a given box: no detection score
    assert given.detection_score is None and "detection_score" not in given.to_dict()
    assert person.to_dict()["detection_score"] == pytest.approx(person.detection_score, abs=1e-4)


def test_predict_all_returns_every_person_the_most_prominent_first(pose, shared_data):
    scene, truths = lsp_scene(shared_data, 2, 6)
    people = pose.predict_all(scene)
    assert len(people) >= 2
    order = [(p.box, p.detection_score) for p in people]
    assert order == prominent_first(order)
    assert pose.predict_all(scene, thorough=False)[0].box == pose.predict(scene).box  # the same search
    for joints in truths:  # each person has a result close to its joints
        assert min(np.median(torso_errors(p.points, joints)) for p in people) < 0.3
    assert all(p.detection_score is not None for p in people)


def test_every_person_is_looked_for_thoroughly_and_the_most_prominent_one_quickly(pose, monkeypatch):
    from dunet.runtime import detect

    searches = []

    def scored_people(rgb, *, tiles, step, threads):
        searches.append((tiles, step))
        return []

    monkeypatch.setattr(detect, "scored_people", scored_people)
    photo = np.full((480, 640, 3), 128, np.uint8)
    quick, thorough = (detect.POSE_TILES, detect.SQUARE_STEP), (detect.THOROUGH_TILES, detect.THOROUGH_STEP)
    assert pose.predict(photo) is None and pose.predict_all(photo) == [] and pose.detect(photo) == []
    assert pose.predict_batch([photo], largest=True) == [[]] and pose.predict_batch([photo]) == [[]]
    assert pose.predict_all(photo, thorough=False) == []
    assert searches == [quick, thorough, thorough, quick, thorough, quick]
    assert thorough[0][:len(quick[0])] == quick[0] and thorough[1] < quick[1]


def test_the_most_prominent_person_is_the_largest_of_the_nearly_surest():
    big_doubted, small_sure, mid_sure, tiny = (0, 0, 400, 400), (0, 0, 100, 200), (0, 0, 150, 150), (0, 0, 10, 10)
    found = [(small_sure, 0.95), (big_doubted, 0.55), (mid_sure, 0.96 - SURE_WITHIN + 0.02), (tiny, 0.96)]
    assert [box for box, _ in prominent_first(found)] == [mid_sure, small_sure, tiny, big_doubted]
    faces = [(tiny, None), (big_doubted, None), (small_sure, None)]  # no scores: the largest first
    assert [box for box, _ in prominent_first(faces)] == [big_doubted, small_sure, tiny]


def test_a_photo_without_people_gives_none_and_a_box_outside_is_one_line(pose):
    empty = np.full((240, 320, 3), 128, np.uint8)
    assert pose.predict(empty) is None and pose.predict_all(empty) == []
    with pytest.raises(DunetError, match=r"^box 400,10,50,80: outside the 320x240 image$"):
        pose.predict(empty, box=(400, 10, 50, 80))


def test_a_person_box_maps_to_the_joints_box_it_stands_for():
    from dunet.api import DETECTOR_BOX

    ratio, (dx, dy) = DETECTOR_BOX["blazepose"]
    x, y, w, h = landmark_box((100, 50, 300, 300), "blazepose")
    assert w == h == pytest.approx(300 / ratio)
    assert x + w / 2 == pytest.approx(250 + dx * w) and y + h / 2 == pytest.approx(200 + dy * w)
