import json

import numpy as np
import pytest

from dunet import DunetError
from dunet.data import open_source
from dunet.data.spec import (
    SPECS, DatasetSpec, flip_pairs_from_names, spec_from_coco_category, spec_from_dict, spec_to_dict,
)
from dunet.data.transforms import flip_keypoints


@pytest.mark.parametrize("name, count", [("300w", 68), ("wflw", 98), ("lsp", 14), ("mpii", 16), ("coco", 17)])
def test_shipped_specs_are_consistent(name, count):
    spec = SPECS[name]
    assert spec.num_keypoints == count
    assert len(set(spec.keypoints)) == count
    perm = spec.flip_index()
    assert sorted(perm) == list(range(count))
    assert (perm[perm] == np.arange(count)).all()  # flipping twice is the identity
    for a, b in spec.skeleton:
        assert a != b


@pytest.mark.parametrize("name", ["lsp", "mpii", "coco"])
def test_body_flip_pairs_pair_left_with_right(name):
    spec = SPECS[name]
    for a, b in spec.flip_pairs:
        left, right = sorted([spec.keypoints[a], spec.keypoints[b]])
        assert left.replace("left", "right") == right
    # Every sided joint is paired; the rest are on the midline.
    paired = {i for pair in spec.flip_pairs for i in pair}
    for i, joint in enumerate(spec.keypoints):
        assert (i in paired) == ("left" in joint or "right" in joint)


def _group(name: str) -> str:
    head, _, tail = name.rpartition("_")
    return head if tail.isdigit() else name


def test_face_flip_pairs_pair_matching_groups():
    for name in ("300w", "wflw"):
        spec = SPECS[name]
        for a, b in spec.flip_pairs:
            group_a, group_b = _group(spec.keypoints[a]), _group(spec.keypoints[b])
            if group_a.startswith(("right_", "left_")):
                assert group_a.split("_", 1)[1] == group_b.split("_", 1)[1] and group_a != group_b
            else:
                assert group_a == group_b  # jaw, nose base, lips: mirrored within the group


def _normalised(points: np.ndarray) -> np.ndarray:
    points = points - points.mean(axis=0)
    return points / np.sqrt((points**2).sum(axis=1).mean())


def _mirror_error(shape: np.ndarray, spec) -> np.ndarray:
    """Per-point distance between a shape and its mirror image with pairs swapped, after the best
    rotation and scale. A mean face is symmetric, so with the right pairs this is small."""
    shape = _normalised(shape)
    mirrored, _ = flip_keypoints(shape, np.ones(len(shape)), 0, spec.flip_index())
    mirrored = _normalised(mirrored)
    u, s, vt = np.linalg.svd(mirrored.T @ shape)
    aligned = mirrored @ (u @ vt) * (s.sum() / (mirrored**2).sum())
    return np.linalg.norm(aligned - shape, axis=1)


def test_ibug_flip_pairs_against_real_300w(shared_data):
    source = open_source(f"300w:{shared_data / '300w'}")
    mean = np.mean([_normalised(s.keypoints) for s in source.samples], axis=0)
    assert _mirror_error(mean, SPECS["300w"]).max() < 0.05
    # Exchanging the partners of any two pairs is caught:
    pairs = list(SPECS["300w"].flip_pairs)
    for i in range(len(pairs)):
        for j in range(i + 1, len(pairs)):
            wrong = list(pairs)
            (a, b), (c, d) = wrong[i], wrong[j]
            wrong[i], wrong[j] = (a, d), (c, b)
            assert _mirror_error(mean, DatasetSpec("x", SPECS["300w"].keypoints, tuple(wrong))).max() > 0.05


def _first_of_pair_on_image_left(keypoints: np.ndarray, spec, eye_on_left: int, eye_on_right: int,
                                 midline) -> list[bool]:
    """For an upright face (roll removed with the eyes): is the first landmark of each pair left of
    the nose line? (The first of a pair is the subject's right side in both face layouts.)"""
    d = keypoints[eye_on_right] - keypoints[eye_on_left]
    angle = -np.arctan2(d[1], d[0])
    rotation = np.array([[np.cos(angle), np.sin(angle)], [-np.sin(angle), np.cos(angle)]])
    upright = (keypoints - keypoints[list(midline)].mean(axis=0)) @ rotation
    return [upright[a, 0] < 0 < upright[b, 0] for a, b in spec.flip_pairs]


def test_wflw_flip_pairs_against_real_wflw(shared_data):
    source = open_source(f"coco:{shared_data / 'fixtures/wflw/test_wflw.json'}")
    assert source.spec is SPECS["wflw"]
    sides = [ok for s in source.samples
             for ok in _first_of_pair_on_image_left(s.keypoints.astype(float), SPECS["wflw"], 96, 97, range(51, 55))]
    assert np.mean(sides) > 0.95  # a few lip points sit on the midline of turned faces


def test_ibug_first_of_pair_on_image_left(shared_data):
    source = open_source(f"300w:{shared_data / '300w'}")
    sides = [ok for s in source.samples[:200]
             for ok in _first_of_pair_on_image_left(s.keypoints.astype(float), SPECS["300w"], 36, 45, range(27, 31))]
    assert np.mean(sides) > 0.95


def test_wflw_pairs_agree_with_ibug_pairs():
    # The usual WFLW -> iBUG-68 correspondence: every other contour point, upper brows, nose,
    # six of the eight eye points, all mouth points.
    to_wflw = (list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
               + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96)))
    wflw_pairs = {frozenset(p) for p in SPECS["wflw"].flip_pairs}
    for a, b in SPECS["300w"].flip_pairs:
        assert frozenset((to_wflw[a], to_wflw[b])) in wflw_pairs


def test_bad_spec_is_rejected():
    with pytest.raises(DunetError, match="bad flip pair"):
        DatasetSpec("x", ("a", "b", "c"), ((0, 1), (1, 2)))
    with pytest.raises(DunetError, match="out of range"):
        DatasetSpec("x", ("a", "b"), (), ((0, 5),))
    with pytest.raises(DunetError, match="normaliser"):
        DatasetSpec("x", ("a", "b"), (), (), ("interocular", None))
    with pytest.raises(DunetError, match="group, subset or eye point is out of range"):
        DatasetSpec("x", ("a", "b"), (), groups=(("Head", (0, 2)),))


@pytest.mark.parametrize("name", sorted(SPECS))
def test_a_spec_round_trips_through_json(name):
    data = json.loads(json.dumps(spec_to_dict(SPECS[name])))
    assert spec_from_dict(data) == SPECS[name]


def test_flip_pairs_from_names():
    assert flip_pairs_from_names(["nose", "left_eye", "right_eye"]) == ((1, 2),)
    assert flip_pairs_from_names(["LeftPaw", "RightPaw", "tail"]) == ((0, 1),)
    assert flip_pairs_from_names(["wrist_l", "wrist_r"]) == ((0, 1),)
    assert flip_pairs_from_names(["nose", "tail"]) is None  # no sides: unknown, so no flipping
    assert flip_pairs_from_names(["left_ear", "tail"]) is None  # a side without a partner


def test_spec_from_coco_category():
    person = {"name": "person", "keypoints": list(SPECS["coco"].keypoints), "skeleton": [[16, 14]]}
    assert spec_from_coco_category(person, 17) is SPECS["coco"]
    custom = {"name": "mouse", "keypoints": ["snout", "left_ear", "right_ear", "tail"], "skeleton": [[1, 2], [1, 3]]}
    spec = spec_from_coco_category(custom, 4)
    assert spec.flip_pairs == ((1, 2),) and spec.skeleton == ((0, 1), (0, 2)) and spec.normaliser[0] == "bbox"
    explicit = spec_from_coco_category({"keypoints": ["a", "b", "c"], "flip_pairs": [[0, 2]]}, 3)
    assert explicit.flip_pairs == ((0, 2),)
    assert spec_from_coco_category({"keypoints": []}, 68) is SPECS["300w"]
    assert spec_from_coco_category({"keypoints": []}, 98) is SPECS["wflw"]
    with pytest.raises(DunetError, match="names 3 keypoints but annotations have 4"):
        spec_from_coco_category({"keypoints": ["a", "b", "c"]}, 4, "f.json")
    with pytest.raises(DunetError, match="f.json: .*bad flip pair"):
        spec_from_coco_category({"keypoints": ["a", "b"], "flip_pairs": [[0, 5]]}, 2, "f.json")
    with pytest.raises(DunetError, match="f.json: .*flip_pairs must be"):
        spec_from_coco_category({"keypoints": ["a", "b"], "flip_pairs": [[0]]}, 2, "f.json")
    with pytest.raises(DunetError, match="skeleton"):
        spec_from_coco_category({"keypoints": ["a", "b"], "skeleton": [[0, 1]]}, 2, "f.json")
