"""Parameter counts of the paper's Table 1 and of the stacked hourglass baseline."""

import pytest
import torch

from dunet.models import ModelConfig, build_model
from dunet.models.profile import count_conv_params, count_params


def meta_model(**kw):
    with torch.device("meta"):  # counts need no memory or init time
        return build_model(ModelConfig(landmarks=16, **kw))


@pytest.mark.parametrize("units,expected", [(4, 3_952_128), (8, 8_009_984), (16, 16_125_696)])
def test_dunet_order1_table1(units, expected):
    model = meta_model(units=units, order=1)
    assert abs(count_params(model) - expected) <= 0.01 * expected
    # The paper's Table 1 counts convolution parameters: 3.9M / 7.9M / 15.9M.
    assert round(count_conv_params(model) / 1e6, 1) == {4: 3.9, 8: 7.9, 16: 15.9}[units]


def test_dunet_order2():
    assert abs(count_params(meta_model(units=8, order=2)) - 8_658_944) <= 0.01 * 8_658_944


@pytest.mark.parametrize("stacks,expected", [(2, 6_730_912), (4, 13_018_816), (8, 25_594_624)])
def test_hourglass(stacks, expected):
    assert abs(count_params(meta_model(arch="hourglass", units=stacks)) - expected) <= 0.01 * expected


@pytest.mark.parametrize("units", [4, 8])
def test_dunet_about_30_percent_of_hourglass(units):
    ratio = count_params(meta_model(units=units)) / count_params(meta_model(arch="hourglass", units=units))
    assert 0.27 < ratio < 0.33


def test_order_k_grows_linearly_full_density_quadratically():
    def steps(order_of):
        counts = [count_params(meta_model(units=n, order=order_of(n))) for n in (4, 8, 12, 16)]
        return [b - a for a, b in zip(counts, counts[1:])]

    order1 = steps(lambda n: 1)
    assert max(order1) - min(order1) <= 0.01 * max(order1)  # linear in the number of U-Nets
    full = steps(lambda n: n)
    assert full[0] < full[1] < full[2]  # quadratic: each 4 more U-Nets cost more than the last 4


def test_order_at_least_units_is_full_density():
    assert count_params(meta_model(units=4, order=3)) == count_params(meta_model(units=4, order=10))


def test_iterative_refinement_adds_about_0_2M():
    extra = count_params(meta_model(units=4, refine=True)) - count_params(meta_model(units=4))
    assert 0.1e6 < extra < 0.3e6  # paper: 3.9M -> 4.1M


def test_hierarchical_block_builds_in_both():
    for arch in ("dunet", "hourglass"):
        assert count_params(meta_model(arch=arch, units=2, block="hierarchical")) > 0
