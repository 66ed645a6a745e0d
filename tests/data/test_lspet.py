"""LSP-extended (`lspet:DIR`): flag 0 = not annotated, shapes checked, the real 10,000 people all kept."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io

from dunet import DunetError
from dunet.data import open_source


def test_every_real_lspet_person_is_kept_with_unannotated_joints_masked(shared_data):
    joints = scipy.io.loadmat(str(shared_data / "lspet/joints.mat"))["joints"]  # (14, 3, 10000)
    source = open_source(f"lspet:{shared_data / 'lspet'}")
    assert len(source) == joints.shape[2] == 10_000 and not source.skipped
    visible = np.stack([s.visible for s in source.samples])
    assert int((visible == 0).sum()) == int((joints[:, 2, :] == 0).sum())
    # Truncated people: annotated joints a little outside their image are real points, kept as labelled.
    outside = sum(bool(((s.keypoints < 0) & (s.visible[:, None] > 0)).any()) for s in source.samples)
    assert outside > 0


@pytest.mark.parametrize("shape", [(3, 14, 2), (14, 2, 2), (14, 3)])
def test_wrong_shape_names_the_file_and_the_accepted_shape(tmp_path, shape):
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.ones(shape)})
    with pytest.raises(DunetError, match=r"joints.mat: 'joints' has shape .* expected \(14, 3, N\) \(lspet\)"):
        open_source(f"lspet:{tmp_path}")


def test_strings_in_joints_mat_are_a_clear_error(tmp_path):
    scipy.io.savemat(str(tmp_path / "joints.mat"), {"joints": np.array(["a", "b"])})
    with pytest.raises(DunetError, match="must hold numbers"):
        open_source(f"lspet:{tmp_path}")
