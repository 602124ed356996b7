"""``keep_freed_memory``: blocks the size of a CPU run's activations come from the heap and stay there."""

import ctypes
import ctypes.util
import sys

import pytest
import torch

from snfs.malloc import MMAP_THRESHOLD, keep_freed_memory


class MallInfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in (
            "arena",
            "ordblks",
            "smblks",
            "hblks",
            "hblkhd",
            "usmblks",
            "fsmblks",
            "uordblks",
            "fordblks",
            "keepcost",
        )
    ]


def mallinfo2():
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("glibc without mallinfo2 (older than 2.33)")
    libc.mallinfo2.restype = MallInfo2
    return libc.mallinfo2()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_activation_sized_blocks_come_from_the_heap_and_are_kept():
    size = 8 << 20  # a LeNet-5-Caffe conv1 activation of a batch of 100 is 4.6 MB
    assert size < MMAP_THRESHOLD and keep_freed_memory()
    before = mallinfo2()
    block = torch.empty(size, dtype=torch.uint8)
    block.fill_(1)
    during = mallinfo2()
    assert during.hblkhd - before.hblkhd < size  # not a fresh mapping from the system
    del block
    after = mallinfo2()
    assert after.arena >= during.arena - size // 2 and after.fordblks >= size // 2  # freed, but kept for reuse
