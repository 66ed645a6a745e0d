"""Balance index (eq. 7) and the measured ratios it is built from."""

import pytest

from dunet.models import ModelConfig, build_model
from dunet.models.efficiency import balance_index, model_size_ratio


def test_balance_index_reproduces_table5():
    # DU-Net(4) fp32: 3.38^2 * 1 * 1 = 11.4; BW-QIG 8/1/8: 4.30^2 * 0.25 * 0.03 = 0.14
    assert balance_index(3.38, 1.0, 1.0) == pytest.approx(11.4, abs=0.05)
    assert balance_index(4.30, 0.25, 0.03) == pytest.approx(0.14, abs=0.005)


def test_model_size_ratio_is_measured_from_files():
    cfg = ModelConfig(channels=16, growth=8, bottleneck=16, landmarks=5, input_size=64, units=2)
    binary = model_size_ratio(build_model(cfg.replace(quant="bw")))
    ternary = model_size_ratio(build_model(cfg.replace(quant="tw-alpha")))
    assert 0 < binary < ternary < 0.25
    assert model_size_ratio(build_model(cfg.replace(quant="8/32/8"))) > 0.7  # float weights stay float
