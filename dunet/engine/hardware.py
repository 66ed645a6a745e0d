"""What the machine can do, decided once per command: the device, the precision and the thread budget
(which a CPU training with `threads: 0` checks again as it goes: FreeCoreWatch).

Each choice comes with its reason, which training and the benchmarks print first, so a run on another
machine says why it runs as it does.
"""

from __future__ import annotations

import os
import platform
import re
import time
import warnings
from dataclasses import dataclass

import torch

from dunet import DunetError

DEVICE_FORMS = "auto, cpu, cuda or cuda:N"


def check_device_name(text: str) -> str:
    """`text` if it is a device name dunet accepts (the config and CLI check it before reading any data)."""
    if text not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", text):
        raise DunetError(f"device {text!r}: choose one of {DEVICE_FORMS}")
    return text


def resolve_device(text: str = "auto") -> torch.device:
    """auto = the first GPU if torch sees one, else the CPU. An explicit cuda on a machine without one is an
    error, not a silent fallback."""
    check_device_name(text)
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(text)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DunetError(f"device {text}: no CUDA GPU is available to PyTorch here "
                             f"(torch {torch.__version__}); use device cpu or auto")
        if (device.index or 0) >= torch.cuda.device_count():
            raise DunetError(f"device {text}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    return device


# oneDNN's ISA limits (ONEDNN_MAX_CPU_ISA) at which its convolutions compute bfloat16 natively. A limit below
# them (AVX2, say) makes a CPU with AVX-512 BF16 run bf16 emulated, as an AVX2-only CPU does.
ONEDNN_BF16_ISAS = ("ALL", "AVX512_CORE_BF16", "AVX512_CORE_FP16", "AVX10_1_512", "AVX512_CORE_AMX",
                    "AVX10_1_512_AMX", "AVX512_CORE_AMX_FP16", "AVX10_1_512_AMX_FP16", "AVX10_2_512",
                    "AVX10_2_512_AMX_2")


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bfloat16 in hardware, and what was found. On a CPU without AVX-512 BF16
    or AMX, oneDNN emulates bf16 convolutions: measured 5x slower than fp32 on a Zen 3 (AVX2)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return True, f"{name} supports bfloat16"
        return False, f"{name} lacks native bfloat16"
    amx, avx512_bf16 = torch.cpu._is_amx_tile_supported(), torch.cpu._is_avx512_bf16_supported()
    if amx or avx512_bf16:
        found = "the CPU has " + " and ".join(n for n, ok in (("AMX", amx), ("AVX-512 BF16", avx512_bf16)) if ok)
        variable = next((v for v in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA") if os.environ.get(v)), None)
        limit = os.environ[variable] if variable else "ALL"
        if limit.upper() not in ONEDNN_BF16_ISAS:
            return False, f"{found}, but {variable}={limit} keeps oneDNN's convolutions from using it"
        return True, found
    return False, f"the CPU has no AVX-512 BF16 or AMX (best: {torch.backends.cpu.get_cpu_capability()})"


def choose_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason). auto = bf16 where the hardware does it natively, fp32 elsewhere. An explicit
    bf16 without native support is kept, with a warning that names the cost."""
    if requested not in ("auto", "fp32", "bf16"):
        raise DunetError(f"precision {requested!r}: choose auto, fp32 or bf16")
    native, why = native_bf16(device)
    if requested == "auto":
        return ("bf16", f"auto: {why}") if native else ("fp32", f"auto: {why}")
    if requested == "bf16" and not native:
        warnings.warn(f"precision bf16 on this machine: {why}, so bfloat16 is emulated and several times slower "
                      "than fp32 (5x measured on a Zen 3); use precision auto or fp32", stacklevel=2)
        return "bf16", f"as asked; {why}: emulated, slow"
    return requested, "as asked"


def autocast(precision: str, device: torch.device):
    """The autocast context of a precision on a device (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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


class FreeCoreWatch:
    """For a one-process CPU run with `threads: 0`: every `every` seconds, between two steps, count again the
    cores other work leaves free (free_cores), so work that starts on the machine after the run did is left its
    core, and the core is taken back when that work ends.

    Called between steps, while this run's own threads are idle: the 0.1 s of counting sees only other work
    (and this run's data worker, which keeps only 2 batches ready and fills them in a fraction of a step)."""

    def __init__(self, threads: int, every: float = 60.0):
        self.threads, self.every = threads, every
        self.due = time.monotonic() + every

    def poll(self) -> int | None:
        """The new thread count when it is time to count and the count changed, else None."""
        now = time.monotonic()
        if now < self.due:
            return None
        free = free_cores()
        self.due = time.monotonic() + self.every
        if free == self.threads:
            return None
        self.threads = free
        return free


@dataclass(frozen=True)
class ThreadPlan:
    threads: int  # intra-op threads of each training process
    workers: int  # data-loading processes of each training process
    reason: str


def plan_threads(threads: int = 0, workers: int = -1, processes: int = 1, device_type: str = "cpu") -> ThreadPlan:
    """Intra-op threads and data workers, sized together. 0 threads = every usable core that other work does
    not keep busy when the run starts (busy_cores), divided between the processes of a distributed run;
    -1 workers = auto. On a CPU the workers share the cores with the
    compute threads: the augmentation pipeline runs 200-400x faster per core than a DU-Net training step
    (bench/data.py), so one worker keeps a CPU run fed and more only take time from the convolutions.
    A GPU run needs more: its steps are much faster and the CPU does nothing else."""
    cores = usable_cores()
    # A torchrun job's processes start together: each would count its siblings' start as other work.
    busy = 0 if threads or processes > 1 else cores - free_cores()
    share = max(1, (cores - busy) // max(1, processes))
    chosen_threads, capped = capped_threads(threads, processes) if threads else (share, "")
    if workers >= 0:
        chosen_workers, why = workers, "as asked"
    elif device_type == "cuda":
        chosen_workers, why = max(1, min(8, share - 1)), "auto for a GPU: the CPU only loads data"
    else:
        chosen_workers, why = 1, "auto for a CPU: one worker keeps training fed"
    if threads:
        cores_note = f" ({capped})" if capped else ""
    elif busy:
        cores_note = f" ({busy} busy with other work, left to it)"
    else:
        cores_note = " (all of them)"
    reason = (f"{chosen_threads} thread(s) x {processes} process(es) on {cores} usable core(s){cores_note}; "
              f"{chosen_workers} data worker(s), {why}")
    return ThreadPlan(chosen_threads, chosen_workers, reason)
