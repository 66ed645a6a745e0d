"""LandmarkModel around any network: what it measures between two models."""

from __future__ import annotations

import numpy as np
import torch

from dunet.data.heatmaps import encode_gaussian
from dunet.data.synthetic import synthetic_source
from dunet.engine.config import config_from_dict
from dunet.engine.inference import LandmarkModel
from tests.engine.conftest import TINY


class PeakNetwork:
    """A stand-in network: one Gaussian peak per landmark at fixed heatmap pixels, whatever the image."""

    backend, precision = "fake", "fp32"

    def __init__(self, points: np.ndarray, size: int):
        self.maps = torch.as_tensor(encode_gaussian(points, np.ones(len(points)), size, sigma=1.0))

    def __call__(self, images):
        return self.maps.expand(len(images), *self.maps.shape)


def test_landmark_shift_is_the_distance_in_input_pixels():
    config = config_from_dict(TINY)
    spec = synthetic_source(1).spec
    size = config.model.heatmap_size
    points = np.random.default_rng(0).uniform(3, size - 4, (spec.num_keypoints, 2))
    moved = points + [1.0, 0.0]  # one heatmap pixel to the right: 4 input pixels
    first = LandmarkModel(PeakNetwork(points, size), config, spec)
    images = torch.zeros(5, 3, config.model.input_size, config.model.input_size)
    assert first.landmark_shift(first, images).shape == (5, spec.num_keypoints)
    assert np.abs(first.landmark_shift(first, images)).max() == 0
    shift = first.landmark_shift(LandmarkModel(PeakNetwork(moved, size), config, spec), images, batch=2)
    np.testing.assert_allclose(shift, 4.0, atol=1e-3)
