"""Training on several sources at once: one layout, the held-out split off the first, per-source weights."""

from __future__ import annotations

import numpy as np
import pytest

from dunet import DunetError
from dunet.data.readers import combine_sources, open_source
from dunet.engine.config import load_config
from dunet.engine.trainer import Distributed, build_data, split_indices


def _config(*overrides):
    return load_config(None, ["model.units=1", "model.input_size=64", "model.landmarks=68", "data.workers=0",
                              *overrides])


def test_the_held_out_split_comes_off_the_first_source_only():
    cfg = _config("data.train=[synthetic:30:0, synthetic:20:7]")
    source, val_source, _, groups, val_idx = build_data(cfg, Distributed())
    first_train, first_val = split_indices(30, cfg.data.val_fraction, cfg.data.split_seed)
    assert val_source is source and val_idx == first_val  # the same held-out samples as the first alone
    assert groups == [first_train, list(range(30, 50))]
    # Each sample loads from its own source: the second source's images are its own, not the first's.
    second = open_source("synthetic:20:7")
    np.testing.assert_array_equal(source.load_image(30), second.load_image(0))
    np.testing.assert_array_equal(source.samples[30].keypoints, second.samples[0].keypoints)


def test_sources_with_different_layouts_are_refused_naming_both(shared_data):
    coco = f"coco:{shared_data / 'fixtures/coco/test_coco.json'}"
    with pytest.raises(DunetError, match=rf"synthetic:4:0 and {coco} have different landmark layouts"):
        combine_sources([open_source("synthetic:4:0"), open_source(coco)])


@pytest.mark.parametrize("weights, problem", [("[1.0]", "1 weights for 2 train sources"),
                                              ("[0, 0]", "not all 0"), ("[1, -1]", "must be >= 0")])
def test_bad_weights_are_refused_by_key(weights, problem):
    with pytest.raises(DunetError, match=problem):
        _config("data.train=[synthetic:4:0, synthetic:4:1]", f"data.train_weights={weights}")


def test_a_single_source_string_still_reads_as_before():
    cfg = _config("data.train=synthetic:12:3")
    assert cfg.data.train == ("synthetic:12:3",)
