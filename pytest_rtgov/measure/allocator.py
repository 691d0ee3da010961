"""The allocator regime of a measuring process: glibc's mmap and trim thresholds, pinned.

glibc's malloc serves a block of 128 KiB or more by mapping fresh pages, and faults them
in on first touch, until the process frees such a mapped block: then it raises its
*dynamic* mmap threshold (up to 32 MiB on 64-bit machines) and the trim threshold with
it, and blocks of that size come from the heap from then on, already faulted in. So the
same kernel, with the same temporaries, costs what the process freed before it: 1.2 to
1.7 ms for a softmax in a fresh process against 0.23 ms once the heap had grown, and an
edit adding a 1 MiB temporary per call +9% in one checkout and +2% in another
(docs/benchmarks.md, "What the benchmark does not predict yet: a whole clone").

A measuring session therefore pins both thresholds with ``mallopt``, in every process
that runs tests (controller and xdist workers), before the first test: the mmap
threshold at the largest value glibc's dynamic rule reaches (32 MiB) and the trim
threshold at twice that, as the rule sets it; setting them turns the rule off. Blocks
up to 32 MiB then come from a heap that is kept, as in a long-running training process
once it has freed a large array, from the first test on and whatever ran before, in the
baseline's session and the current one alike: a kernel is timed on its arithmetic, not
on page faults that depend on the test order. (Pinning the thresholds at their starting
values instead, 128 KiB, faults every temporary in per call: an extra temporary then
costs +22% to +55% on the workload's kernels, five times what it costs a warm process.)
The regime is recorded in the run record's environment (``allocator``).
``--rtgov-allocator system`` leaves the allocator as it is; a ``MALLOC_MMAP_THRESHOLD_``
or ``MALLOC_TRIM_THRESHOLD_`` the user set is respected, and recorded. Elsewhere than
glibc (macOS, Windows, musl) nothing is pinned, and the record says so.
"""

from __future__ import annotations

import ctypes
import os
import platform

__all__ = ["ALLOCATOR_MODES", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "describe", "pin"]

ALLOCATOR_MODES = ("pinned", "system")
MMAP_THRESHOLD = 32 << 20  # glibc's DEFAULT_MMAP_THRESHOLD_MAX on 64-bit machines
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD  # what the dynamic rule sets beside it
_M_TRIM_THRESHOLD = -1  # <malloc.h>
_M_MMAP_THRESHOLD = -3
_USER_VARIABLES = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")

_regime = "system: not pinned"


def _glibc() -> bool:
    try:
        return platform.libc_ver()[0] == "glibc"
    except OSError:  # the executable cannot be read
        return False


def pin(mode: str = "pinned") -> str:
    """Set this process's allocator regime for measuring (``mode`` one of
    ``ALLOCATOR_MODES``) and return its description, which :func:`describe` returns
    from then on."""
    global _regime
    user = [f"{name}={os.environ[name]}" for name in _USER_VARIABLES if name in os.environ]
    if mode == "system":
        _regime = "system: not pinned (--rtgov-allocator system)"
    elif user:
        _regime = "system: set by the environment, " + ", ".join(user)
    elif not _glibc():
        _regime = "system: not pinned (not glibc)"
    else:
        try:
            mallopt = ctypes.CDLL(None).mallopt
            mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
            mallopt.restype = ctypes.c_int
            done = (
                mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
            )
        except (OSError, AttributeError):
            done = False
        _regime = (
            f"glibc pinned: mmap threshold {MMAP_THRESHOLD}, trim threshold {TRIM_THRESHOLD}"
            if done
            else "system: not pinned (mallopt refused)"
        )
    return _regime


def describe() -> str:
    """The regime :func:`pin` set in this process (``system: not pinned`` before)."""
    return _regime
