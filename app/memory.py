"""glibc malloc settings for a process that moves megabytes of base64 per request.

With glibc's defaults a freed multi-megabyte buffer goes back to the kernel (munmap, or a trim of
the heap top), so the next request's buffer of the same size is page-faulted in afresh: every
body read, decode and render pays for zero-filled pages. Measured by the benchmark
(tests/benchmarks/RESULTS.md): a 1.5 MB answer cost 8.9 ms of CPU with the defaults and ~6 ms with
these settings; four 2K images (20 MB), 54 ms and ~31 ms. Buffers up to 32 MB (glibc's ceiling for
this threshold) come from the heap, and up to 128 MB of free heap is kept for reuse: a resident
size that stays near the last burst's peak, in exchange. (256 MB saved a little more CPU but left
two workers over the s2 memory budget; 64 MB cost 40 % more CPU on 20 MB answers.)
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

M_TRIM_THRESHOLD = -1  # mallopt parameter numbers, from glibc's malloc.h
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024
TRIM_THRESHOLD_BYTES = 128 * 1024 * 1024

log = logging.getLogger("app.memory")


def tune_malloc() -> bool:
    """Apply the settings when the C library is glibc; True if it did. Elsewhere (musl, macOS)
    nothing changes, and an operator's own MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_
    takes precedence."""
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    applied = bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)) and bool(
        mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES)
    )
    if not applied:
        log.warning("could not apply the malloc settings for large buffers")
    return applied
