"""Keep freed memory in the process (glibc malloc), so a training step reuses the last step's activations.

glibc returns every freed block above its mmap threshold to the kernel, and trims the heap's free top, so
each step page-faults its large activations in again and the kernel zero-fills them. On this project's
CPU that made a DU-Net training step at 256 px in fp32 1.17-1.36x slower (bench/train.py --default-malloc). The
price is RSS: memory freed at the end of a step stays mapped, ready for the next one.
"""

from __future__ import annotations

import ctypes
import platform

# mallopt() parameters, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_TOP_PAD = -2
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_MAX = 32 << 20  # the largest mmap threshold glibc accepts on 64-bit
NEVER_TRIM = -1  # documented in mallopt(3): -1 disables trimming
TOP_PAD = 256 << 20  # grow the heap in steps of 256 MiB rather than page by page


def keep_freed_memory() -> bool:
    """Raise glibc's mmap and trim thresholds for this process. False (nothing changed) where libc is not glibc."""
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    mallopt = getattr(ctypes.CDLL(None), "mallopt", None)
    if mallopt is None:
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return (bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_MAX)) and bool(mallopt(M_TRIM_THRESHOLD, NEVER_TRIM))
            and bool(mallopt(M_TOP_PAD, TOP_PAD)))
