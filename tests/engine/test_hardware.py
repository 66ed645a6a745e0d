"""Device, precision and thread choices (dunet/engine/hardware.py), with the CPU's features mocked both ways."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch

from dunet import DunetError
from dunet.engine import hardware
from dunet.engine.config import load_config
from dunet.runtime import cpu

CPU = torch.device("cpu")
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


@pytest.fixture
def cpu_features(monkeypatch):
    for name in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"):
        monkeypatch.delenv(name, raising=False)

    def set_features(avx512_bf16: bool, amx: bool) -> None:
        flags = {"avx2"} | ({"avx512_bf16"} if avx512_bf16 else set()) | ({"amx_bf16", "amx_tile"} if amx else set())
        monkeypatch.setattr(cpu, "cpu_flags", lambda: frozenset(flags))
    return set_features


@pytest.mark.parametrize("avx512_bf16, amx", [(True, False), (False, True), (True, True)])
def test_auto_picks_bf16_on_a_cpu_with_native_bf16(cpu_features, avx512_bf16, amx):
    cpu_features(avx512_bf16, amx)
    precision, reason = hardware.choose_precision("auto", CPU)
    assert precision == "bf16"
    assert ("AMX" in reason) == amx and ("AVX-512 BF16" in reason) == avx512_bf16


def test_auto_picks_fp32_on_a_cpu_without_native_bf16(cpu_features):
    cpu_features(False, False)
    precision, reason = hardware.choose_precision("auto", CPU)
    assert precision == "fp32" and "no AVX-512 BF16 or AMX" in reason


@pytest.mark.parametrize("variable", ["ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA"])
def test_auto_picks_fp32_where_onednn_is_kept_below_bf16(cpu_features, monkeypatch, variable):
    cpu_features(True, True)
    monkeypatch.setenv(variable, "AVX2")
    precision, reason = hardware.choose_precision("auto", CPU)
    assert precision == "fp32" and f"{variable}=AVX2" in reason
    monkeypatch.setenv(variable, "avx512_core_bf16")
    assert hardware.choose_precision("auto", CPU)[0] == "bf16"


def test_explicit_bf16_without_native_support_warns_with_the_cost(cpu_features):
    cpu_features(False, False)
    with pytest.warns(UserWarning, match="emulated and several times slower"):
        assert hardware.choose_precision("bf16", CPU)[0] == "bf16"


def test_explicit_choices_are_kept_silently_where_native(cpu_features):
    cpu_features(True, False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert hardware.choose_precision("bf16", CPU)[0] == "bf16"
        assert hardware.choose_precision("fp32", CPU)[0] == "fp32"


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_one_clear_error():
    with pytest.raises(DunetError, match="no CUDA GPU is available"):
        hardware.resolve_device("cuda")
    assert hardware.resolve_device("auto") == CPU


@pytest.mark.parametrize("text", ["gpu", "cuda:x", "cuda:-1", "tpu"])
def test_bad_device_names_are_refused_when_the_config_is_read(text):
    with pytest.raises(DunetError, match="choose one of auto, cpu, cuda or cuda:N"):
        load_config(None, [f"device={text}"])


def test_recipes_default_to_auto():
    cfg = load_config(None)
    assert (cfg.precision, cfg.device, cfg.threads, cfg.data.workers) == ("auto", "auto", 0, -1)


def test_thread_plan_uses_every_usable_core_and_sizes_workers_with_them(monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 8)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 0)
    plan = hardware.plan_threads()
    assert (plan.threads, plan.workers) == (8, 1) and "8 usable core(s) (all of them)" in plan.reason
    assert hardware.plan_threads(processes=2).threads == 4  # torchrun: the cores are shared
    explicit = hardware.plan_threads(threads=3, workers=0)
    assert (explicit.threads, explicit.workers) == (3, 0) and "as asked" in explicit.reason
    assert hardware.plan_threads(device_type="cuda").workers == 7


def test_thread_plan_leaves_cores_that_other_work_keeps_busy(monkeypatch):
    monkeypatch.setattr(cpu, "usable_cores", lambda: 8)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 3)
    plan = hardware.plan_threads()
    assert plan.threads == 5 and "3 busy with other work" in plan.reason
    assert hardware.plan_threads(processes=2).threads == 4  # torchrun: siblings starting are not other work
    assert hardware.plan_threads(threads=8).threads == 8  # asked for: the user decides
    monkeypatch.setattr(cpu, "busy_cores", lambda: 8)
    assert hardware.plan_threads().threads == 1  # never none


def test_threads_above_the_cores_are_capped_saying_so(monkeypatch):
    """threads=1000 on 2 cores was accepted and crawled (0.5 images/s)."""
    monkeypatch.setattr(cpu, "usable_cores", lambda: 2)
    monkeypatch.setattr(cpu, "busy_cores", lambda: 0)
    plan = hardware.plan_threads(threads=1000, workers=0)
    assert plan.threads == 2 and "threads 1000 is more than the 2 usable core(s): using 2" in plan.reason
    assert hardware.plan_threads(threads=1000, processes=2).threads == 1
    assert hardware.plan_threads(threads=2).reason.startswith("2 thread(s) x 1 process(es) on 2 usable core(s);")


def test_busy_cores_counts_the_usable_cores_more_than_half_busy(monkeypatch):
    """(busy, total) ticks of each core, read twice: core 0 busy 90 % of the interval, core 1 10 %, core 2 60 %
    but not this process's to use."""
    samples = iter([{0: (0, 0), 1: (0, 0), 2: (0, 0)}, {0: (90, 100), 1: (10, 100), 2: (60, 100)}])
    monkeypatch.setattr(cpu, "_cpu_times", lambda: next(samples))
    monkeypatch.setattr(cpu.os, "sched_getaffinity", lambda pid: {0, 1})
    assert cpu.busy_cores(seconds=0) == 1
    monkeypatch.setattr(cpu, "_cpu_times", lambda: {})  # no /proc/stat: nothing is known to be busy
    assert cpu.busy_cores(seconds=0) == 0


def test_cpu_times_reads_this_machine():
    times = cpu._cpu_times()
    if not Path("/proc/stat").exists():
        pytest.skip("no /proc/stat")
    assert times and all(0 <= busy <= total for busy, total in times.values())


@needs_cuda
def test_training_and_inference_on_cuda(tmp_path):
    """A tiny training on the GPU whose checkpoint loads and predicts on the CPU, and the reverse."""
    from dunet.engine.inference import load_torch_model
    from dunet.engine.trainer import train

    cfg = load_config(None, ["model.units=1", "model.input_size=64", "model.landmarks=68", "optim.epochs=1",
                             "optim.batch_size=4", "data.train=synthetic:16:0", "data.val=synthetic:4:1",
                             "data.workers=0", "device=cuda"])
    train(cfg, tmp_path / "run", log=lambda *_: None)
    images = torch.rand(2, 3, 64, 64)
    affine = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]).expand(2, 2, 3)
    on_cpu = load_torch_model(tmp_path / "run" / "last", precision="fp32", device="cpu")
    on_gpu = load_torch_model(tmp_path / "run" / "last", precision="fp32", device="cuda")
    a, _ = on_cpu.predict_crops(images, affine)
    b, _ = on_gpu.predict_crops(images, affine)
    assert abs(a - b).max() < 0.5
