"""The normaliser is defined once, from the spec: what NME and PCK divide each sample's errors by."""

import math

import numpy as np

from dunet.data.sample import Sample, normaliser, normalisers
from dunet.data.spec import SPECS, spec_from_names, with_normaliser


def pose(points: dict[int, tuple[float, float]], scale: float = 80.0, **meta) -> Sample:
    keypoints = np.zeros((14, 2))
    visible = np.zeros(14)
    for joint, xy in points.items():
        keypoints[joint], visible[joint] = xy, 1
    return Sample("im.jpg", keypoints, visible, center=(0, 0), scale=scale, meta=meta)


def test_two_landmark_normalisers_need_both_points_labelled():
    torso = pose({8: (10, 10), 3: (40, 50)})  # right shoulder, left hip: 50 px apart
    no_hip = pose({8: (10, 10)})
    flat = pose({8: (10, 10), 3: (10, 10)})  # a zero length is no normaliser either
    np.testing.assert_array_equal(normalisers(SPECS["lsp"], [torso, no_hip, flat]), [50.0, np.nan, np.nan])
    assert normaliser(SPECS["lsp"], torso) == 50.0
    eyes = with_normaliser(SPECS["lsp"], "interocular:right_shoulder,left_shoulder")
    assert math.isnan(normaliser(eyes, torso))  # left shoulder (9) unlabelled


def test_head_and_box_normalisers_come_from_the_sample():
    mpii = SPECS["mpii"]
    head = Sample("im.jpg", np.zeros((16, 2)), np.ones(16), (0, 0), 200.0, meta={"head_size": 30.0})
    assert normaliser(mpii, head) == 30.0
    assert math.isnan(normaliser(mpii, Sample("im.jpg", np.zeros((16, 2)), np.ones(16), (0, 0), 200.0)))
    boxed = spec_from_names("mouse", [f"p{i}" for i in range(14)])
    assert boxed.normaliser == ("bbox", None)
    assert normaliser(boxed, pose({0: (1, 1)}, scale=80.0)) == 80.0
    assert normaliser(boxed, pose({0: (1, 1)}, scale=640.0, object_size=25.0)) == 25.0  # a whole-frame crop
    assert normalisers(boxed, []).shape == (0,)
