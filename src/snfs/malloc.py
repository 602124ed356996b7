"""Keep freed CPU memory in the process for reuse (the ``keep_freed_memory`` key).

A CPU training step allocates and frees the same few activation buffers of a few MB each time. With
glibc's defaults, blocks that large are mapped from the operating system and handed back when freed,
so every step pays page faults and the kernel zeroing fresh pages again. Fixing the thresholds keeps
such blocks in the heap (docs/performance.md#cpu-memory has what it measured, with
results/bench/lenet5_caffe.md). It changes where memory comes from, never what is computed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

# mallopt(3) parameters (glibc's malloc.h)
M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # blocks below it come from the heap; 32 MiB is the largest glibc sets by itself
TRIM_THRESHOLD = 256 << 20  # free memory at the top of the heap is kept up to this much


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds for this process; False where there is no glibc (macOS, musl)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and bool(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
