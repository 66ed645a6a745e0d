"""What the CPU offers this process: its name, the cores it may use and those other work leaves free. No
PyTorch: inference and training read the same facts (`dunet.engine.hardware` adds the device and precision)."""

from __future__ import annotations

import functools
import os
import platform
import time
import warnings

from dunet import DunetError

PRECISIONS = ("auto", "fp32", "bf16")

# oneDNN's ISA limits (ONEDNN_MAX_CPU_ISA) at which its convolutions compute bfloat16 natively. A limit below
# them (AVX2, say) makes a CPU with AVX-512 BF16 run bf16 emulated, as an AVX2-only CPU does; OpenVINO's CPU
# plugin, built on oneDNN, then finds no bf16 kernels at all.
ONEDNN_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX",
                    "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                    "AVX10_2_512_AMX_2")


def cpu_name() -> str:
    """The CPU's model name ("AMD EPYC 7B13", "Intel(R) Xeon(R) Processor"): figures that depend on the CPU name it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def usable_cores() -> int:
    """Cores this process may run on (its CPU affinity, e.g. under taskset or a container's cpuset)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _cpu_times() -> dict[int, tuple[int, int]]:
    """(busy, total) clock ticks of every core since boot, from /proc/stat; {} where it cannot be read."""
    times = {}
    try:
        with open("/proc/stat") as f:
            for line in f:
                name, *fields = line.split()
                if name.startswith("cpu") and name[3:].isdigit():
                    ticks = [int(x) for x in fields[:8]]  # user nice system idle iowait irq softirq steal
                    times[int(name[3:])] = (sum(ticks) - ticks[3] - ticks[4], sum(ticks))
    except (OSError, ValueError):
        return {}
    return times


def busy_cores(seconds: float = 0.1) -> int:
    """Usable cores that other work keeps more than half busy, over `seconds` now (0 where unknown).

    Why: intra-op threads wait for each other at the end of every operation, so one thread on a core that
    another process holds stalls them all. The demo model trained at 1.6-1.9 images/s with 2 threads beside a
    busy loop on the other core, 88-95 with 1 (AMD EPYC Zen 3, bench/results/threads_busy_core_zen3.json)."""
    try:
        mine = os.sched_getaffinity(0)
    except AttributeError:
        return 0
    before = _cpu_times()
    time.sleep(seconds)
    after = _cpu_times()
    busy = 0
    for cpu in mine & before.keys() & after.keys():
        used, total = (a - b for a, b in zip(after[cpu], before[cpu]))
        busy += total > 0 and used > total / 2
    return busy


def free_cores() -> int:
    """Usable cores less those that other work keeps busy now (busy_cores); at least 1. What `threads: 0`
    means for training and for inference alike."""
    cores = usable_cores()
    return max(1, cores - busy_cores())


def capped_threads(threads: int, processes: int = 1) -> tuple[int, str]:
    """`threads` asked for by each of `processes`, at most their share of the usable cores, and a note when it
    was more. Threads beyond the cores only wait for each other: `threads: 1000` on 2 cores trained at 0.5
    images/s, a 16 s run unfinished after 150 s."""
    share = max(1, usable_cores() // max(1, processes))
    if threads <= share:
        return threads, ""
    per = " per process" if processes > 1 else ""
    return share, f"threads {threads} is more than the {share} usable core(s){per}: using {share}"


@functools.cache
def cpu_flags() -> frozenset[str]:
    """The feature flags of the CPU (/proc/cpuinfo: "avx2", "avx512_bf16", "amx_bf16", ...); empty where unknown."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16() -> tuple[bool, str]:
    """Whether this CPU computes bfloat16 in hardware for oneDNN (PyTorch's and OpenVINO's kernels), and what was
    found. On a CPU without AVX-512 BF16 or AMX bf16 is emulated: measured 5x slower than fp32 on a Zen 3 (AVX2)."""
    flags = cpu_flags()
    amx, avx512_bf16 = "amx_bf16" in flags, "avx512_bf16" in flags
    if not (amx or avx512_bf16):
        return False, "the CPU has no AVX-512 BF16 or AMX"
    found = "the CPU has " + " and ".join(n for n, ok in (("AMX", amx), ("AVX-512 BF16", avx512_bf16)) if ok)
    variable = next((v for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA") if os.environ.get(v)), None)
    limit = os.environ[variable] if variable else "ALL"
    if limit.upper() not in ONEDNN_BF16_ISAS:
        return False, f"{found}, but {variable}={limit} keeps oneDNN's convolutions from using it"
    return True, found


def choose_precision(requested: str, native: tuple[bool, str] | None = None) -> tuple[str, str]:
    """(precision, reason). auto = bf16 where the hardware does it natively (`native`: (bool, what was found),
    default this CPU's), fp32 elsewhere. An explicit bf16 without native support is kept, with a warning that
    names the cost."""
    if requested not in PRECISIONS:
        raise DunetError(f"precision {requested!r}: choose auto, fp32 or bf16")
    native_bf16_here, why = native or native_bf16()
    if requested == "auto":
        return ("bf16", f"auto: {why}") if native_bf16_here else ("fp32", f"auto: {why}")
    if requested == "bf16" and not native_bf16_here:
        warnings.warn(f"precision bf16 on this machine: {why}, so bfloat16 is emulated and several times slower "
                      "than fp32 (5x measured on a Zen 3); use precision auto or fp32", stacklevel=3)
        return "bf16", f"as asked; {why}: emulated, slow"
    return requested, "as asked"
