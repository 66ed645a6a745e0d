import ctypes
import platform

import pytest
import torch

from dunet.engine.allocator import keep_freed_memory

glibc = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="glibc malloc only")


class MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in
                ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks",
                 "keepcost")]


def mallinfo2() -> MallInfo2:
    fn = ctypes.CDLL(None).mallinfo2
    fn.restype = MallInfo2
    return fn()


@glibc
def test_freed_activations_stay_in_the_heap():
    assert keep_freed_memory()
    size = 24 << 20  # an activation of a 256 px DU-Net step: above glibc's default mmap threshold
    block = torch.empty(size, dtype=torch.uint8)
    block.fill_(1)
    mapped_while_held = mallinfo2().hblkhd
    del block
    info = mallinfo2()
    # Not handed back with munmap (the default for blocks this large) but free in the heap for the next step.
    assert info.fordblks >= size
    assert info.hblkhd <= mapped_while_held
