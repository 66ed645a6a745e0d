"""LandmarkModel around any network: what it measures between two models."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch

from dunet.data.heatmaps import encode_gaussian
from dunet.data.synthetic import synthetic_source
from dunet.engine.config import config_from_dict
from dunet.runtime import cpu
from dunet.runtime.model import LandmarkModel, load_model
from tests.engine.conftest import TINY


class PeakNetwork:
    """A stand-in network: one Gaussian peak per landmark at fixed heatmap pixels, whatever the image."""

    backend, precision = "fake", "fp32"

    def __init__(self, points: np.ndarray, size: int):
        self.maps = torch.as_tensor(encode_gaussian(points, np.ones(len(points)), size, sigma=1.0))

    def __call__(self, images):
        return self.maps.expand(len(images), *self.maps.shape).numpy()


def test_landmark_shift_is_the_distance_in_input_pixels():
    config = config_from_dict(TINY)
    spec = synthetic_source(1).spec
    size = config.model.heatmap_size
    points = np.random.default_rng(0).uniform(3, size - 4, (spec.num_keypoints, 2))
    moved = points + [1.0, 0.0]  # one heatmap pixel to the right: 4 input pixels
    first = LandmarkModel(PeakNetwork(points, size), config.model_card(spec))
    images = torch.zeros(5, 3, config.model.input_size, config.model.input_size)
    assert first.landmark_shift(first, images).shape == (5, spec.num_keypoints)
    assert np.abs(first.landmark_shift(first, images)).max() == 0
    shift = first.landmark_shift(LandmarkModel(PeakNetwork(moved, size), config.model_card(spec)), images, batch=2)
    np.testing.assert_allclose(shift, 4.0, atol=1e-3)


@pytest.mark.kernels
def test_threads_0_leaves_the_cores_that_other_work_keeps_busy(monkeypatch):
    """Without threads, a model loads onto the cores other work leaves free (one PyTorch thread on a busy core
    stalls the others: 19 vs 691 ms per face, docs/hardware.md); asked-for threads are kept."""

    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(cpu, "busy_cores", lambda seconds=0.1: 1)
    before = torch.get_num_threads()
    try:
        runner = load_model("300w-dunet2-w80", backend="torch", device="cpu")
        assert runner.threads == 1 and torch.get_num_threads() == 1
        assert load_model("300w-dunet2-w80", backend="torch", device="cpu", threads=2).threads == 2
        assert torch.get_num_threads() == 2
        monkeypatch.setattr(cpu, "busy_cores", lambda seconds=0.1: 0)
        assert load_model("300w-dunet2-w80", backend="torch", device="cpu").threads == 2
    finally:
        torch.set_num_threads(before)
    if importlib.util.find_spec("openvino") is not None:
        monkeypatch.setattr(cpu, "busy_cores", lambda seconds=0.1: 1)
        runner = load_model("300w-dunet2-w80", backend="openvino")
        compiled = runner.network.request.get_compiled_model()
        assert runner.threads == 1 and int(compiled.get_property("INFERENCE_NUM_THREADS")) == 1
