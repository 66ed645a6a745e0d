"""bench/memory.py: the fresh-process measurement on a small config, and the budget arithmetic."""

import importlib.util
import json
from pathlib import Path

import pytest

from dunet import DunetError

BENCH = Path(__file__).resolve().parents[2] / "bench" / "memory.py"


@pytest.fixture(scope="module")
def memory_bench():
    spec = importlib.util.spec_from_file_location("bench_memory", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_efficient_mode_measures_less_memory(memory_bench):
    rows = {
        mode: memory_bench.measure(1, mode == "efficient", input_size=64, batch=2)
        for mode in ("naive", "efficient")
    }
    naive, efficient = rows["naive"], rows["efficient"]
    assert naive["params"] == efficient["params"] > 0
    for row in rows.values():
        assert row["train_bytes"] == (row["step_peak_bytes"] + row["param_bytes"] + row["optimizer_state_bytes"]
                                      + row["data_bytes"])
        # RSS really follows the activations (no allocator cache hides them): the step's peak growth
        # is at least most of what autograd saved.
        assert row["step_peak_bytes"] >= 0.7 * row["saved_bytes"] > 0
        assert row["step_seconds"] > 0
    assert efficient["saved_bytes"] < 0.8 * naive["saved_bytes"]
    assert efficient["train_bytes"] < naive["train_bytes"]
    assert "(kept for recompute)" in efficient["saved_by_producer"]
    assert "CatBackward0" in naive["saved_by_producer"] and "CatBackward0" not in efficient["saved_by_producer"]


@pytest.mark.slow
def test_bad_config_is_a_clear_error(memory_bench):
    with pytest.raises(DunetError, match="input_size 100 must be a multiple of 64"):
        memory_bench.measure(1, False, input_size=100, batch=1)


def test_unsupported_quant_is_a_clear_error(memory_bench):
    with pytest.raises(DunetError, match="not-a-quant-spec"):
        memory_bench.check_quant("not-a-quant-spec")


def test_memory_at_interpolates_and_extrapolates(memory_bench):
    points = {1: 10.0, 3: 30.0, 4: 50.0}
    assert memory_bench.memory_at(points, 2) == pytest.approx(20.0)
    assert memory_bench.memory_at(points, 6) == pytest.approx(90.0)  # slope of the last two points
    with pytest.raises(ValueError):
        memory_bench.memory_at({1: 10.0}, 2)


def test_deepest_units_under_budget(memory_bench):
    points = {1: 10.0, 2: 20.0, 4: 40.0}
    assert memory_bench.deepest_units(points, 45.0) == (4, False)
    assert memory_bench.deepest_units(points, 65.0) == (6, True)
    assert memory_bench.deepest_units(points, 5.0) == (0, False)


def test_run_writes_table_json_and_plot(memory_bench, monkeypatch, tmp_path, capsys):
    # Fake figures so that only the driver is tested: naive grows 3 per U-Net, efficient 1.
    def fake_measure(units, memory_efficient, quant="none", **kw):
        slope = 1 if memory_efficient else 3
        return {"units": units, "mode": "efficient" if memory_efficient else "naive", "quant": quant,
                "train_bytes": slope * units * memory_bench.GB, "step_peak_bytes": 0, "saved_bytes": 0,
                "params": units * 10**6, "step_seconds": 0.1, "saved_by_module": {}, "saved_by_producer": {}}

    monkeypatch.setattr(memory_bench, "measure", fake_measure)
    out = tmp_path / "memory.json"
    assert memory_bench.main(["--units", "1,2,4", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    assert report["budget_bytes"] == pytest.approx(27 * memory_bench.GB)  # naive at N=9
    assert report["deepest"]["naive/none"] == {"units": 9, "extrapolated": True}
    assert report["deepest"]["efficient/none"] == {"units": 27, "extrapolated": True}
    assert out.with_suffix(".png").stat().st_size > 0
    assert "efficient fits 3.00x" in capsys.readouterr().out


def test_bad_modes_exit_with_one_line_error(memory_bench, tmp_path, capsys):
    assert memory_bench.main(["--modes", "lazy", "--out", str(tmp_path / "m.json")]) == 2
    assert "unknown ['lazy']" in capsys.readouterr().err
