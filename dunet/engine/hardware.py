"""What the machine can do, decided once per command: the device, the precision and the thread budget
(which a CPU training with `threads: 0` checks again as it goes: FreeCoreWatch).

Each choice comes with its reason, which training and the benchmarks print first, so a run on another
machine says why it runs as it does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from dunet import DunetError
from dunet.config import check_device_name
from dunet.runtime import cpu

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


def native_bf16(device: torch.device) -> tuple[bool, str]:
    """Whether `device` computes bfloat16 in hardware, and what was found. On a CPU without AVX-512 BF16
    or AMX, oneDNN emulates bf16 convolutions: measured 5x slower than fp32 on a Zen 3 (AVX2)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        if torch.cuda.is_bf16_supported():
            return True, f"{name} supports bfloat16"
        return False, f"{name} lacks native bfloat16"
    return cpu.native_bf16()


def choose_precision(requested: str, device: torch.device) -> tuple[str, str]:
    """(precision, reason) on `device`: see dunet.runtime.cpu.choose_precision."""
    if requested not in cpu.PRECISIONS:
        raise DunetError(f"precision {requested!r}: choose auto, fp32 or bf16")
    return cpu.choose_precision(requested, native_bf16(device))


def autocast(precision: str, device: torch.device):
    """The autocast context of a precision on a device (a no-op for fp32)."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


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
        free = cpu.free_cores()
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
    cores = cpu.usable_cores()
    # A torchrun job's processes start together: each would count its siblings' start as other work.
    busy = 0 if threads or processes > 1 else cores - cpu.free_cores()
    share = max(1, (cores - busy) // max(1, processes))
    chosen_threads, capped = cpu.capped_threads(threads, processes) if threads else (share, "")
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
