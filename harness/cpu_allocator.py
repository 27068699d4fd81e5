"""glibc's malloc set for CPU training: a training step's freed buffers stay in the process for the next step.

Every update allocates and frees the same intermediate tensors; the large ones (SRPO's 256×1024 activations,
1 MiB each) go through glibc's malloc. With glibc's dynamic defaults a process can settle where each step's
freed memory at the top of the heap is trimmed back to the OS (trim threshold: twice the largest chunk freed so
far), so the next step faults the same pages in again, zeroed, from every thread that touches them. Whether it
settles there depends on the order of a process's first allocations. Measured on 2 cores (SRPO's compiled step,
``resource.getrusage`` minor faults): two of eight processes took ~1,500–1,700 page faults per update and ran at
16–18 updates/s, the others none at 19–29; a process training an eager and a compiled SRPO side by side faulted
in both (300–500 and 900–1,600 per update). With the settings below, none faulted (0–3 per update, eager and
compiled). ``configure_cpu_allocator`` fixes the thresholds instead of glibc's adapting them: chunks up to
32 MiB (glibc's largest mmap threshold on 64-bit) come from the heap, and the heap is trimmed only when more
than 512 MiB lies free at its top. A process keeps the peak memory of its step (what it needed anyway).

``FLOWBENCH_MALLOC=system`` keeps glibc's defaults; elsewhere than glibc (macOS, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import os

# mallopt(3) parameters (malloc.h)
M_TRIM_THRESHOLD, M_TOP_PAD, M_MMAP_THRESHOLD = -1, -2, -3
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit: larger values are refused
TRIM_THRESHOLD = 512 << 20
TOP_PAD = 16 << 20  # grow the heap 16 MiB at a time: fewer brk calls while a step's buffers first arrive

_configured = False


def glibc() -> ctypes.CDLL | None:
    """This process's C library where it is glibc (it has ``gnu_get_libc_version``), else None."""
    try:
        libc = ctypes.CDLL(None)
    except OSError:
        return None
    return libc if hasattr(libc, "gnu_get_libc_version") and hasattr(libc, "mallopt") else None


def configure_cpu_allocator() -> bool:
    """Sets glibc's mmap and trim thresholds for training (module docstring), once per process; returns whether
    they are set (False with ``FLOWBENCH_MALLOC=system`` or without glibc)."""
    global _configured
    if _configured:
        return True
    if os.environ.get("FLOWBENCH_MALLOC", "").lower() == "system":
        return False
    libc = glibc()
    if libc is None:
        return False
    # mallopt returns 1 on success; setting any threshold also turns glibc's dynamic adjustment off
    _configured = all(libc.mallopt(param, value) == 1 for param, value in (
        (M_MMAP_THRESHOLD, MMAP_THRESHOLD), (M_TRIM_THRESHOLD, TRIM_THRESHOLD), (M_TOP_PAD, TOP_PAD)))
    return _configured
