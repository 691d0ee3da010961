"""Peak-memory helpers the benchmarks share: Linux's ``/proc/self`` (no dependency)."""

from __future__ import annotations


def status_kib(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status``, such as ``VmRSS`` or ``VmHWM``."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset ``VmHWM`` to the current RSS (writing 5 to ``clear_refs``); False where
    that is not allowed, and peaks are then measured from the process's start."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
        return True
    except OSError:
        return False
