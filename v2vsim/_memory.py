"""Large arrays served from malloc's heap, and memory freed kept for the next ones.

glibc's malloc maps each block above its threshold afresh from the kernel and unmaps it when
it is freed, so every large temporary array (a million patients' floats are 8 MB) is paid for
again in page faults as it is first written. Over a large vectorised run that costs more than
the arithmetic itself: a fresh process computed the million-referral stress scenario in 2.3–3.0
s, and the same process a second time in 1.3 s, once glibc had raised its threshold on its own.
:func:`keep_freed_memory` sets the threshold and the trim threshold from the start, as the
``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` environment variables would: blocks up
to 32 MB (glibc's largest threshold) come from the heap, and up to 128 MB of freed memory at
its top is kept rather than returned. The command line and v2vsim's worker processes call it;
the library leaves a caller's process as it is. Results do not depend on it.
"""

from __future__ import annotations

import os
import sys

__all__ = ["MMAP_THRESHOLD", "TRIM_THRESHOLD", "keep_freed_memory"]

#: Blocks up to this size come from the heap (glibc's largest: HEAP_MAX_SIZE / 2 on 64 bits).
MMAP_THRESHOLD = 32 * 2**20
#: Freed memory at the top of the heap kept for reuse, up to this much. A larger value kept
#: more of the stress run's freed temporaries and raised its peak (1,067 MB at 512 MB; 906 MB
#: at 64 or 128 MB, against 878 MB by default), for no further gain in time.
TRIM_THRESHOLD = 128 * 2**20

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers (malloc.h)
_ENVIRONMENT = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_state: dict[str, bool] = {}


def keep_freed_memory() -> bool:
    """Set glibc malloc's thresholds for large arrays (see the module); whether they were set.
    Nothing is done on another C library or platform, or where the environment already tunes
    malloc (``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_``, ``GLIBC_TUNABLES``). Once
    per process; a forked process inherits the setting."""
    if "done" in _state:
        return _state["done"]
    done = False
    if sys.platform.startswith("linux") and not any(os.environ.get(name) for name in _ENVIRONMENT):
        import ctypes

        try:
            mallopt = ctypes.CDLL(None).mallopt
        except (OSError, AttributeError):  # pragma: no cover - a C library without mallopt
            mallopt = None
        if mallopt is not None:
            mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
            mallopt.restype = ctypes.c_int
            # mallopt returns 1 on success (a stub, as in musl, returns 0).
            done = mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    _state["done"] = done
    return done
