"""Memory probes: peak memory above the level at a region's start.

Four modes, chosen by ``--rtgov-memory``:

``tracemalloc``
    Python's tracer; numpy reports its array buffers to it (domain 389047), so it
    sees array allocations. Traces only while a region is open. The default: a few
    microseconds per region (see docs/memory.md for the measurements).
``memray``
    A ``memray.Tracker`` per outermost region. Sees every allocation, native ones
    included, to the byte, and keeps the capture file as evidence (flamegraphs,
    top allocators). About 11-15 ms per region.
``rss``
    Linux: resident set high-water mark after resetting it through
    ``/proc/self/clear_refs``. Sees touched pages of any allocator, no Python cost
    per allocation, 50-100 us per region.
``off``
    Nothing.

Regions nest (a fixture asking for another fixture inside its body): each probe
keeps a stack and carries an inner region's peak out to the enclosing one.
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path
from typing import Protocol

from pytest_rtgov.core.constants import MEMORY_MODES
from pytest_rtgov.errors import InvalidOptionError

__all__ = [
    "MEMORY_MODES",
    "TRACEMALLOC_UNMEASURED",
    "MemoryProbe",
    "make_probe",
]

# A sample's evidence when the code under test used tracemalloc itself (its peak: None).
TRACEMALLOC_UNMEASURED = (
    "unmeasured: the code under test started, stopped or cleared tracemalloc itself"
)


class MemoryProbe(Protocol):
    mode: str

    def start(self) -> None: ...

    def stop(self) -> tuple[int | None, str | None]:
        """Peak bytes above the start level (None: not measured) and an evidence path."""
        ...

    def close(self) -> None: ...


class _StackedPeak:
    """Peak bookkeeping for probes whose peak counter is global and resettable.

    Each open region is a ``[base, carry]`` pair: its level at start and the
    highest absolute peak seen by regions nested in it (their resets would
    otherwise hide it).
    """

    __slots__ = ("_stack",)

    def __init__(self) -> None:
        self._stack: list[list[int]] = []

    def push(self, current: int, peak_so_far: int) -> None:
        stack = self._stack
        if stack and peak_so_far > stack[-1][1]:
            stack[-1][1] = peak_so_far
        stack.append([current, current])

    def pop(self, peak: int) -> int:
        stack = self._stack
        base, carry = stack.pop()
        absolute = peak if peak > carry else carry
        if stack and absolute > stack[-1][1]:
            stack[-1][1] = absolute
        return absolute - base if absolute > base else 0

    @property
    def depth(self) -> int:
        return len(self._stack)


class OffProbe:
    mode = "off"

    def start(self) -> None:
        pass

    def stop(self) -> tuple[int | None, str | None]:
        return None, None

    def close(self) -> None:
        pass


class TracemallocProbe:
    """Starts tracing when the outermost region opens and stops when it closes.

    When someone else already traces (``python -X tracemalloc``), their tracing is
    left on and only the peak is reset.
    """

    mode = "tracemalloc"
    __slots__ = ("_owned", "_peaks", "_sentinel")

    def __init__(self) -> None:
        self._peaks = _StackedPeak()
        self._owned = False
        self._sentinel: object = None

    def start(self) -> None:
        peaks = self._peaks
        if not peaks._stack:
            if not tracemalloc.is_tracing():
                # Fast path, the usual case: fresh tracing starts at zero traced bytes
                # and a zero peak, so there is nothing to reset. The frame is pushed
                # before tracing starts so that its own allocation is not traced.
                peaks.push(0, 0)
                tracemalloc.start()
                self._owned = True
                # A traced object: code under test that stops, restarts or clears
                # tracemalloc loses its trace (see stop). The base is the level after it.
                self._sentinel = object()
                peaks._stack[-1][0] = tracemalloc.get_traced_memory()[0]
                return
            self._sentinel = object()
        current, peak = tracemalloc.get_traced_memory()
        peaks.push(current, peak)
        tracemalloc.reset_peak()

    def stop(self) -> tuple[int | None, str | None]:
        """The peak, or ``(None, TRACEMALLOC_UNMEASURED)`` when the code under test
        stopped, restarted or cleared tracemalloc during the region: its peak is then
        unknown (never reported as 0 B). A lone ``tracemalloc.reset_peak()`` is not
        seen (it lowers the peak)."""
        peaks = self._peaks
        outermost = len(peaks._stack) == 1
        if tracemalloc.is_tracing() and tracemalloc.get_object_traceback(self._sentinel):
            result: tuple[int | None, str | None] = (
                peaks.pop(tracemalloc.get_traced_memory()[1]),
                None,
            )
        else:
            peaks.pop(0)
            result = None, TRACEMALLOC_UNMEASURED
        if outermost:
            self._sentinel = None
            if self._owned:
                tracemalloc.stop()
                self._owned = False
        return result

    def close(self) -> None:
        if self._owned:
            tracemalloc.stop()
            self._owned = False


_STATUS = "/proc/self/status"
_CLEAR_REFS = "/proc/self/clear_refs"


def _status_kib(field: bytes) -> int:
    with open(_STATUS, "rb") as fh:
        for line in fh:
            if line.startswith(field):
                return int(line.split()[1])
    raise OSError(f"{field.decode()} missing from {_STATUS}")


class RssProbe:
    """Resident set high-water mark, reset per region by writing 5 to clear_refs."""

    mode = "rss"
    __slots__ = ("_peaks",)

    def __init__(self) -> None:
        if not os.access(_CLEAR_REFS, os.W_OK):
            raise InvalidOptionError(
                "invalid value for --rtgov-memory: 'rss' needs Linux's writable "
                f"{_CLEAR_REFS}; use 'tracemalloc' or 'memray' here"
            )
        self._peaks = _StackedPeak()

    def start(self) -> None:
        hwm = _status_kib(b"VmHWM:") * 1024
        with open(_CLEAR_REFS, "w") as fh:
            fh.write("5")
        self._peaks.push(_status_kib(b"VmRSS:") * 1024, hwm)

    def stop(self) -> tuple[int | None, str | None]:
        return self._peaks.pop(_status_kib(b"VmHWM:") * 1024), None

    def close(self) -> None:
        pass


class MemrayProbe:
    """One memray capture per outermost region, kept under ``capture_dir``.

    memray allows one active Tracker per process, so a region nested inside a
    tracked one is not measured on its own (its allocations count in the outer one).
    """

    mode = "memray"
    __slots__ = ("_capture_dir", "_counter", "_depth", "_path", "_tracker")

    def __init__(self, capture_dir: Path) -> None:
        import memray  # noqa: F401  (fail at configure time, not in the first test)

        self._capture_dir = capture_dir
        self._counter = 0
        self._depth = 0
        self._tracker: object | None = None
        self._path: Path | None = None

    def start(self) -> None:
        self._depth += 1
        if self._depth > 1:
            return
        import memray

        self._capture_dir.mkdir(parents=True, exist_ok=True)
        self._counter += 1
        self._path = self._capture_dir / f"region-{self._counter:06d}.bin"
        tracker = memray.Tracker(self._path, file_format=memray.FileFormat.AGGREGATED_ALLOCATIONS)
        tracker.__enter__()
        self._tracker = tracker

    def stop(self) -> tuple[int | None, str | None]:
        self._depth -= 1
        if self._depth > 0 or self._tracker is None or self._path is None:
            return None, None
        import memray

        tracker, path = self._tracker, self._path
        self._tracker = self._path = None
        tracker.__exit__(None, None, None)  # type: ignore[attr-defined]
        with memray.FileReader(path) as reader:
            peak = int(reader.metadata.peak_memory)
        return peak, str(path)

    def close(self) -> None:
        if self._tracker is not None:
            self._tracker.__exit__(None, None, None)  # type: ignore[attr-defined]
            self._tracker = None


def make_probe(mode: str, *, capture_dir: Path) -> MemoryProbe:
    """The probe for ``mode``; raises InvalidOptionError for unknown or unusable modes."""
    if mode == "tracemalloc":
        return TracemallocProbe()
    if mode == "memray":
        return MemrayProbe(capture_dir)
    if mode == "rss":
        return RssProbe()
    if mode == "off":
        return OffProbe()
    raise InvalidOptionError(
        f"invalid value for --rtgov-memory, expected one of "
        f"{', '.join(repr(m) for m in MEMORY_MODES)} (not {mode!r})"
    )
