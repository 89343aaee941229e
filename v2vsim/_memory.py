"""Memory settings for a process that builds large arrays: :func:`settle_for_large_arrays`.

The command line calls it first thing (its worker processes inherit the settings); a program
that uses v2vsim as a library may call it before it imports NumPy. This module sits below every
layer and imports nothing of v2vsim, NumPy or the C library until it is called.

Two defaults make fresh memory expensive on Linux, where a million-referral replication (a
few hundred MB of patient columns, and temporaries of 8 MB each) spends much of its time in the
kernel, filling pages on first touch:

* NumPy asks for transparent huge pages for every array of 4 MB or more (``madvise``). Where the
  kernel's ``transparent_hugepage/defrag`` is ``madvise`` (the default of many distributions),
  a page fault in such an array may first compact memory to find 2 MB. On
  ``benchmarks/stress_1m.yaml`` (vectorised engine, fresh processes) the kernel's share was
  1.3-2.0 s with them, 0.8-0.9 s without (``NUMPY_MADVISE_HUGEPAGE=0``, NumPy's own switch).
* glibc maps every block over its threshold (128 KB, raised as blocks are freed, up to 32 MB)
  fresh from the system and returns it when freed, so each temporary array is new memory to
  fault in again. With blocks up to 16 MB taken from the heap and up to 32 MB of freed memory
  kept for reuse, the kernel's share fell to 0.6-0.7 s, the run from 2.3-2.9 s to 1.5-1.8 s.
  ``v2vsim run benchmarks/stress_1m.yaml`` (figures included) took 6.8 s instead of 8.2 s
  (median of four, alternating), its peak memory unchanged (896 MiB; 941 MiB with 32 MB and
  128 MB).

Settings the user made (``NUMPY_MADVISE_HUGEPAGE``, ``MALLOC_MMAP_THRESHOLD_``,
``MALLOC_TRIM_THRESHOLD_`` in the environment) are left as they are.
"""

from __future__ import annotations

import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "settle_for_large_arrays"]

#: Bytes from which glibc maps a block of its own (instead of taking it from the heap).
MMAP_THRESHOLD = 16 * 1024 * 1024
#: Bytes of free memory at the top of the heap that glibc keeps instead of returning.
TRIM_THRESHOLD = 32 * 1024 * 1024

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters (malloc.h)
_done = False


def settle_for_large_arrays() -> None:
    """Set this process up for large arrays (see the module's text); once, on Linux."""
    global _done
    if _done or not sys.platform.startswith("linux"):
        return
    _done = True
    if "NUMPY_MADVISE_HUGEPAGE" not in os.environ:
        os.environ["NUMPY_MADVISE_HUGEPAGE"] = "0"  # read when NumPy is imported (and by children)
        numpy = sys.modules.get("numpy")
        if numpy is not None:  # imported already: its own setter (NumPy 2 and 1)
            core = getattr(numpy, "_core", None) or getattr(numpy, "core", None)
            setter = getattr(getattr(core, "multiarray", None), "_set_madvise_hugepage", None)
            if setter is not None:
                setter(False)
    if "MALLOC_MMAP_THRESHOLD_" in os.environ or "MALLOC_TRIM_THRESHOLD_" in os.environ:
        return
    try:
        if not (os.confstr("CS_GNU_LIBC_VERSION") or "").startswith("glibc"):
            return
    except (ValueError, OSError, AttributeError):  # not glibc
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None)
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
        libc.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD)
    except (OSError, AttributeError):  # pragma: no cover - no mallopt
        pass
