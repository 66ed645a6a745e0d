"""Shared by the benchmarks: median wall time of a step, after one warm-up call; the fastest run, for
peaks; what the machine is."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path


def median_step_seconds(step: Callable[[], None], steps: int) -> float:
    step()  # warm-up: oneDNN primitive creation and kernel selection
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def fastest_seconds(fn: Callable[[], None], repeats: int) -> float:
    """For peaks: what the machine can do is its fastest run (a median on this shared VM reads up to 20 % low)."""
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def has_cpu_flag(flag: str) -> bool:
    try:
        return f" {flag} " in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


def machine() -> dict:
    """CPU and its int8 / bf16 matrix features: results differ between machines of this project
    (this project has run on an Intel Xeon with AMX and on an AMD EPYC with AVX-512 BF16 but no AMX)."""
    import torch

    from dunet.runtime.cpu import cpu_name

    # An ISA limit (ONEDNN_MAX_CPU_ISA=AVX2 ATEN_CPU_CAPABILITY=avx2) makes a newer CPU compute like an
    # AVX2-only one: recorded, so such figures are never mistaken for the CPU's own.
    limits = {v: os.environ[v] for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
              if os.environ.get(v)}
    return {"cpu": cpu_name(), "amx": has_cpu_flag("amx_tile"), "avx512_bf16": has_cpu_flag("avx512_bf16"),
            "avx512_vnni": has_cpu_flag("avx512_vnni"), "torch_cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "isa_limits": limits, "load_average": os.getloadavg()}


def results_file(stem: str) -> Path:
    """bench/results/STEM_CPU.json, the CPU's name in the file name: figures differ between CPUs."""
    from dunet.runtime.cpu import cpu_name

    cpu = "".join(c if c.isalnum() else "_" for c in cpu_name().lower()).strip("_")
    while "__" in cpu:
        cpu = cpu.replace("__", "_")
    return Path(__file__).resolve().parent / "results" / f"{stem}_{cpu}.json"
