"""Shared by the benchmarks: median wall time of a step, after one warm-up call."""

from __future__ import annotations

import time
from collections.abc import Callable


def median_step_seconds(step: Callable[[], None], steps: int) -> float:
    step()  # warm-up: oneDNN primitive creation and kernel selection
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]
