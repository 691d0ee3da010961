"""A noisy neighbour for the benchmarks: one process keeping one core busy."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def hog(enabled: bool = True) -> Iterator[int | None]:
    """Run ``python -c 'while True: pass'`` for the block; yields its pid (None when off).

    Started before the block and killed by its pid after it, whatever the block did.
    """
    if not enabled:
        yield None
        return
    proc = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()
