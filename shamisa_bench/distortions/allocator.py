"""Opt-in tuning of glibc's allocator for the engine's large temporaries.

Every engine operation on a step allocates tensors of about 18 MB (30 crops of 224 x 224 x
3 float32). With glibc's defaults, memory that large is returned to the system when freed
and faulted in again at the next allocation, which costs about a fifth of the engine's CPU
time. :func:`tune_malloc` keeps such blocks on the heap instead. It changes process-wide
allocator settings, so nothing calls it implicitly: ``shamisa-bench perf engine`` does
(unless ``--no-malloc-tuning``), and a training loop or data-loader worker may.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["tune_malloc"]

_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4


def tune_malloc(
    mmap_threshold: int = 32 * 1024 * 1024, trim_threshold: int = 1 << 30, *, use_mmap: bool = True
) -> bool:
    """Raise glibc's mmap and trim thresholds (``mallopt``); a no-op off glibc.

    Args:
        mmap_threshold: blocks up to this size come from the heap (glibc's maximum on
            64-bit systems is 32 MiB).
        trim_threshold: free memory at the top of the heap kept before trimming.
        use_mmap: False serves even blocks above the threshold from the heap (``M_MMAP_MAX``
            = 0). Training allocates activations of hundreds of MB every step; served by mmap,
            each is page-faulted afresh, which on CPU cost about half of a step's time.

    Returns:
        True if both settings were applied.
    """
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok_mmap = mallopt(_M_MMAP_THRESHOLD, int(mmap_threshold)) == 1
    ok_trim = mallopt(_M_TRIM_THRESHOLD, int(trim_threshold)) == 1
    ok_max = use_mmap or mallopt(_M_MMAP_MAX, 0) == 1
    return ok_mmap and ok_trim and ok_max
