import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dunet import DunetError
from dunet.data.spec import SPECS, spec_from_names, with_normaliser
from dunet.metrics import (
    box_size, ced_auc, ced_curve, evaluate, failure_rate, format_table, inter_pupil, nme, pck, plot_ced,
)

IBUG_EYES, WFLW_EYES = SPECS["300w"].eye_centres, SPECS["wflw"].eye_centres


def face68() -> np.ndarray:
    """One iBUG-68 face (1, 68, 2): outer eye corners 60 px apart, eye centres 40 px apart, landmark box 100 x 64."""
    gt = np.full((1, 68, 2), [50.0, 30.0])
    gt[0, 0] = (0, 0)
    gt[0, 16] = (100, 64)
    # Right eye 36-41 (centre (20, 50)), left eye 42-47 (centre (60, 50)); outer corners 36 and 45.
    gt[0, 36:42] = [(10, 50), (15, 47), (25, 47), (30, 50), (25, 53), (15, 53)]
    gt[0, 42:48] = [(50, 50), (55, 47), (65, 47), (70, 50), (65, 53), (55, 53)]
    return gt


def between(gt: np.ndarray, a: int, b: int) -> np.ndarray:
    """(N,) distance between landmarks a and b: the interocular / torso normaliser of fully labelled samples."""
    return np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)


# --- NME and its normalisers -------------------------------------------------------------------

def test_nme_hand_computed_with_mask():
    gt = np.array([[[0, 0], [10, 0], [0, 10]], [[0, 0], [10, 0], [0, 10]]], dtype=float)
    pred = gt.copy()
    pred[0, 0] += (3, 4)  # error 5
    pred[0, 2] += (0, 2)  # error 2
    pred[1] += (6, 8)  # error 10 on every point
    normaliser = np.array([10.0, 20.0])
    np.testing.assert_allclose(nme(pred, gt, None, normaliser), [(5 + 0 + 2) / 3 / 10, 10 / 20])
    visible = np.array([[False, True, True], [True, True, True]])
    np.testing.assert_allclose(nme(pred, gt, visible, normaliser), [(0 + 2) / 2 / 10, 0.5])
    # A sample without labelled points, or with a zero normaliser, has no score.
    visible[1] = False
    result = nme(pred, gt, visible, np.array([0.0, 20.0]))
    assert np.isnan(result).all()


def test_inter_pupil_ibug68():
    gt = face68()
    visible = np.ones((1, 68), dtype=bool)
    np.testing.assert_allclose(inter_pupil(gt, visible, IBUG_EYES), [40.0])
    visible[0, 45] = False  # one eye point missing -> undefined
    assert np.isnan(inter_pupil(gt, visible, IBUG_EYES)).all()


def test_inter_pupil_wflw98():
    gt = np.zeros((1, 98, 2))
    gt[0, 96], gt[0, 97] = (5, 0), (5, 12)
    np.testing.assert_allclose(inter_pupil(gt, np.ones((1, 98), dtype=bool), WFLW_EYES), [12.0])


def test_box_size_uses_labelled_points_only():
    gt = np.array([[[0, 0], [8, 0], [4, 2], [100, 100]]], dtype=float)
    visible = np.array([[True, True, True, False]])
    np.testing.assert_allclose(box_size(gt, visible), [4.0])  # sqrt(8 * 2)


# --- failure rate, AUC, CED --------------------------------------------------------------------

ERRORS = np.array([0.02, 0.05, 0.09, 0.12])


def test_failure_rate_and_auc_on_a_known_list():
    assert failure_rate(ERRORS, 0.08) == pytest.approx(0.5)
    assert failure_rate(ERRORS, 0.10) == pytest.approx(0.25)
    # Area under the CED step curve / t: each sample gives max(0, 1 - e / t).
    assert ced_auc(ERRORS, 0.10) == pytest.approx((0.8 + 0.5 + 0.1 + 0.0) / 4)
    assert ced_auc(ERRORS, 0.08) == pytest.approx((0.75 + 0.375 + 0.0 + 0.0) / 4)


def test_failure_is_strictly_above_threshold_and_nan_is_left_out():
    assert failure_rate(np.array([0.08, 0.01, np.nan]), 0.08) == 0.0
    assert ced_auc(np.array([0.0, np.nan]), 0.1) == pytest.approx(1.0)


def test_auc_matches_a_densely_sampled_ced_curve():
    errors = np.random.default_rng(0).gamma(2.0, 0.02, size=200)
    x, y = ced_curve(errors, 0.1, num=20001)
    assert y[-1] == pytest.approx(np.mean(errors <= 0.1))
    area = np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)) / 0.1
    assert ced_auc(errors, 0.1) == pytest.approx(area, abs=1e-3)


def test_plot_ced_writes_a_png(tmp_path: Path):
    path = plot_ced({"a": ERRORS, "b": ERRORS / 2}, tmp_path / "plots" / "ced.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(path) as image:
        assert image.size == (500, 400)


# --- PCK ---------------------------------------------------------------------------------------

def test_pck_hand_computed_with_mask_and_boundary():
    gt = np.zeros((2, 3, 2))
    pred = gt.copy()
    pred[0] += [(3, 4), (0, 6), (0, 0)]  # errors 5, 6, 0 against threshold 0.5 * 10 = 5
    pred[1] += [(6, 8), (11, 0), (15, 20)]  # errors 10, 11, 25 against threshold 0.5 * 20 = 10
    normaliser = np.array([10.0, 20.0])
    mean, per_joint = pck(pred, gt, None, normaliser, 0.5)
    # An error exactly at the threshold counts as correct.
    np.testing.assert_allclose(per_joint, [100.0, 0.0, 50.0])
    assert mean == pytest.approx(100 * 3 / 6)
    visible = np.array([[True, True, True], [True, True, False]])
    mean, per_joint = pck(pred, gt, visible, normaliser, 0.5)
    np.testing.assert_allclose(per_joint, [100.0, 0.0, 100.0])
    assert mean == pytest.approx(100 * 3 / 5)


def test_pck_just_past_the_boundary_is_wrong():
    gt = np.zeros((1, 1, 2))
    assert pck(gt + [[[5.0, 0.0]]], gt, None, np.array([10.0]), 0.5)[0] == 100.0
    assert pck(gt + [[[5.0 + 1e-9, 0.0]]], gt, None, np.array([10.0]), 0.5)[0] == 0.0


def test_evaluate_mpii_pckh_leaves_pelvis_and_thorax_out():
    gt = np.random.default_rng(1).uniform(0, 200, (2, 16, 2))
    pred = gt.copy()
    head_size = np.array([20.0, 40.0])
    pred[:, 6] += 50  # pelvis, thorax: far off
    pred[:, 7] += 50
    pred[0, 9] += (6, 8)  # head top, error 10 = 0.5 * 20: correct
    pred[1, 8] += (0, 20.5)  # upper neck, error 20.5 > 0.5 * 40: wrong
    result = evaluate(pred, gt, np.ones((2, 16)), SPECS["mpii"], head_size)
    assert result["pckh_0.5"] == pytest.approx(100 * 27 / 28)
    assert result["per_joint"]["pelvis"] == 0.0 and result["per_joint"]["upper_neck"] == 50.0
    assert result["per_group"]["Head"] == pytest.approx(75.0)
    assert result["per_group"]["Sho."] == 100.0
    assert result["per_group"]["Mean"] == result["pckh_0.5"]
    assert result["n"] == 2 and result["n_excluded"] == 0


def test_evaluate_mpii_without_head_sizes_scores_nothing():
    gt = np.zeros((1, 16, 2))
    result = evaluate(gt, gt, None, SPECS["mpii"], np.array([np.nan]))
    assert result["pckh_0.5"] is None and result["n_excluded"] == 1


def test_evaluate_lsp_uses_the_torso():
    gt = np.zeros((1, 14, 2))
    gt[0, 8], gt[0, 3] = (0, 0), (30, 40)  # torso 50 -> PCK@0.2 threshold 10 px
    gt[0, 13] = (0, -40)
    pred = gt.copy()
    pred[0, 0] += (6, 8)  # error 10: correct (boundary)
    pred[0, 13] += (10.5, 0)  # head top, error 10.5: wrong
    torso = between(gt, 8, 3)
    result = evaluate(pred, gt, None, SPECS["lsp"], torso)
    assert result["pck_0.2"] == pytest.approx(100 * 13 / 14)
    assert result["per_joint"]["head_top"] == 0.0 and result["per_joint"]["right_ankle"] == 100.0
    assert result["per_group"]["Head"] == pytest.approx(50.0)
    assert result["mean_error_px"] == pytest.approx((10 + 10.5) / 14)
    assert result["pck_0.2_body12"] == 100.0  # head top is not one of the 12 body joints
    pred[0, 1] += (0, 11)  # right knee wrong: 11 of 12 body joints
    assert evaluate(pred, gt, None, SPECS["lsp"], torso)["pck_0.2_body12"] == pytest.approx(100 * 11 / 12)


def test_evaluate_needs_the_specs_landmarks():
    gt = np.zeros((1, 16, 2))
    with pytest.raises(DunetError, match="16 landmarks but the lsp spec has 14"):
        evaluate(gt, gt, None, SPECS["lsp"], np.ones(1))
    with pytest.raises(DunetError, match="one value per sample"):
        evaluate(gt, gt, None, SPECS["mpii"], np.ones(2))


def test_evaluate_custom_uses_the_box_normaliser_and_the_specs_names():
    gt = np.zeros((2, 2, 2))
    pred = gt + [[[2, 0], [5, 0]], [[2, 0], [5, 0]]]
    result = evaluate(pred, gt, None, spec_from_names("mouse", ["nose", "tail"]), np.array([10.0, 25.0]))
    # Thresholds 2 and 5 px.
    assert result["per_joint"] == {"nose": 100.0, "tail": 50.0}
    assert result["pck_0.2"] == pytest.approx(75.0)
    assert "per_group" not in result


# --- evaluate on faces, output ---------------------------------------------------------------

def test_evaluate_face_keys_and_units():
    gt = np.concatenate([face68(), face68()])
    pred = gt.copy()
    pred[0] += (3, 4)  # error 5 px on every point: NME io 5/60, ip 5/40, box 5/80
    pred[1] += (0, 3)  # error 3 px: io 3/60 = 0.05
    result = evaluate(pred, gt, None, SPECS["300w"], between(gt, 36, 45))
    assert result["nme_io"] == pytest.approx(100 * (5 / 60 + 3 / 60) / 2)
    assert result["nme_ip"] == pytest.approx(100 * (5 / 40 + 3 / 40) / 2)
    assert result["nme_box"] == pytest.approx(100 * (5 / 80 + 3 / 80) / 2)
    assert result["fr_0.08"] == 0.5 and result["fr_0.10"] == 0.0
    assert result["auc_0.10"] == pytest.approx(((1 - (5 / 60) / 0.1) + (1 - 0.05 / 0.1)) / 2)
    assert result["auc_0.08"] == pytest.approx((0 + (1 - 0.05 / 0.08)) / 2)
    assert result["mean_error_px"] == pytest.approx(4.0)
    json.dumps(result, allow_nan=False)


def test_evaluate_face_excludes_samples_without_normaliser():
    gt = np.concatenate([face68(), face68()])
    pred = gt + 1.0
    visible = np.ones((2, 68), dtype=bool)
    visible[1, 36] = False
    result = evaluate(pred, gt, visible, SPECS["300w"], np.array([60.0, np.nan]))
    assert result["n"] == 2 and result["n_excluded"] == 1
    assert result["nme_io"] == pytest.approx(100 * np.sqrt(2) / 60)


def test_a_face_set_is_scored_as_its_spec_says_not_by_its_point_count():
    gt = np.random.default_rng(2).uniform(0, 50, (3, 68, 2))
    own = spec_from_names("my_faces", [f"p{i}" for i in range(68)])  # 68 points, scored by the box
    boxed = evaluate(gt + 0.5, gt, None, own, np.full(3, 50.0))
    assert boxed["pck_0.2"] == 100.0 and "nme_io" not in boxed and "fr_0.08" not in boxed
    # A face set with inter-ocular points but no eye centres: NME without the inter-pupil figure.
    eyes = with_normaliser(own, "interocular:p36,p45")
    result = evaluate(gt + 0.5, gt, None, eyes, between(gt, 36, 45))
    assert result["nme_io"] > 0 and result["nme_ip"] is None and result["nme_box"] > 0
    json.dumps(result, allow_nan=False)


def test_bad_shapes_are_clear_errors():
    spec, norm = SPECS["300w"], np.ones(2)
    with pytest.raises(DunetError, match="predictions have shape"):
        evaluate(np.zeros((2, 68, 2)), np.zeros((2, 98, 2)), None, spec, norm)
    with pytest.raises(DunetError, match="visibility mask"):
        evaluate(np.zeros((2, 68, 2)), np.zeros((2, 68, 2)), np.ones((2, 5)), spec, norm)
    with pytest.raises(DunetError, match="NaN"):
        evaluate(np.full((1, 68, 2), np.nan), np.zeros((1, 68, 2)), None, spec, norm[:1])


def test_format_table_lists_every_metric():
    gt = np.random.default_rng(3).uniform(0, 200, (2, 16, 2))
    result = evaluate(gt + 1, gt, None, SPECS["mpii"], np.array([20.0, 30.0]))
    text = format_table(result)
    assert "pckh_0.5" in text and "100.00 %" in text
    assert re.search(r"Head\s+Sho\.\s+Elb\.\s+Wri\.\s+Hip\s+Knee\s+Ank\.\s+Mean", text) and "left_wrist" in text
    face = format_table(evaluate(face68() + 1, face68(), None, SPECS["300w"], np.array([60.0])))
    assert "nme_io" in face and "auc_0.10" in face and "%" in face


# --- real data ---------------------------------------------------------------------------------

def read_pts(path: Path) -> np.ndarray:
    lines = path.read_text().splitlines()
    start = lines.index("{") + 1
    return np.array([[float(v) for v in line.split()] for line in lines[start:start + 68]])


def test_eye_distances_on_real_300w_faces(shared_data: Path):
    files = sorted((shared_data / "300w").glob("*.pts"))[:50]
    gt = np.stack([read_pts(f) for f in files])
    visible = np.ones(gt.shape[:2], dtype=bool)
    # Outer eye corners lie outside the eye centres on every real face.
    ratio = between(gt, 36, 45) / inter_pupil(gt, visible, IBUG_EYES)
    assert np.all((ratio > 1.1) & (ratio < 1.8))
    result = evaluate(gt, gt, visible, SPECS["300w"], between(gt, 36, 45))
    assert result["nme_io"] == 0.0 and result["fr_0.08"] == 0.0 and result["auc_0.08"] == 1.0
