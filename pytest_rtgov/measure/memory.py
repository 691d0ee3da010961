"""Memory probes: peak memory above the level at a region's start.

Five modes, chosen by ``--rtgov-memory``:

``auto``
    The default. Precise (tracemalloc) where something needs it: the subjects a
    ``peak_memory`` gate selects and tests marked ``@pytest.mark.rtgov(memory=True)``;
    elsewhere the cheap resident set probe below (no cost per allocation), or not
    measured (None) where Linux's clear_refs is not there. Each sample records which
    probe measured it (``memory_probe``).
``tracemalloc``
    Python's tracer; numpy reports its array buffers to it (domain 389047), so it
    sees array allocations. Traces only while a region is open: a few microseconds
    per region, and a hook on every allocation inside it (docs/memory.md).
``memray``
    A ``memray.Tracker`` per outermost region. Sees every allocation, native ones
    included, to the byte, and keeps the capture file as evidence (flamegraphs,
    top allocators). About 11-15 ms per region.
``rss``
    Linux: resident set high-water mark after resetting it through
    ``/proc/self/clear_refs``. Sees touched pages of any allocator, no Python cost
    per allocation, a few microseconds per region. Elsewhere (macOS, Windows) the
    process's peak, which cannot be reset: only regions that raise it are measured
    (:mod:`pytest_rtgov.measure.peak_rss`).
``off``
    Nothing.

Regions nest (a fixture asking for another fixture inside its body): each probe
keeps a stack and carries an inner region's peak out to the enclosing one.
"""

from __future__ import annotations

import _tracemalloc
import os
import sys
import tracemalloc
from pathlib import Path
from typing import Protocol

from pytest_rtgov.core.constants import MEMORY_MODES
from pytest_rtgov.errors import InvalidOptionError
from pytest_rtgov.extras import require

if sys.platform != "win32":  # POSIX; this rss probe is Linux only (rss_available)
    from resource import RUSAGE_SELF, getpagesize, getrusage

__all__ = [
    "MEMORY_MODES",
    "TRACEMALLOC_UNMEASURED",
    "AutoProbe",
    "MemoryProbe",
    "make_probe",
    "rss_available",
]

# A sample's evidence when the code under test used tracemalloc itself (its peak: None).
TRACEMALLOC_UNMEASURED = (
    "unmeasured: the code under test started, stopped or cleared tracemalloc itself"
)
# The tracemalloc probe's sentinel: an object() it traces when the outermost region opens.
# Code under test that stops, restarts or clears tracemalloc takes its trace away. The
# C function, not tracemalloc.get_object_traceback: no Traceback object per region.
_object_traceback = _tracemalloc._get_object_traceback
_SENTINEL_BYTES = object.__basicsize__  # what tracemalloc traces for one object()


class MemoryProbe(Protocol):
    mode: str

    @property
    def measured_by(self) -> str | None:
        """The probe that measured the region that stopped last (a MEMORY_MODES name)."""
        ...

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
    measured_by = None

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

    mode = measured_by = "tracemalloc"
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
                peaks.push(_SENTINEL_BYTES, _SENTINEL_BYTES)
                tracemalloc.start()
                self._owned = True
                self._sentinel = object()  # traced: the region's base level (see stop)
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
        # While tracing, only the two reads (the sentinel's after the peak: its check
        # allocates). Each allocation now costs a traceback, a scan of the allocating
        # function's line table (~2,300 instructions): the rest runs after the stop.
        peak = tracemalloc.get_traced_memory()[1] if tracemalloc.is_tracing() else -1
        intact = peak >= 0 and _object_traceback(self._sentinel) is not None
        if len(peaks._stack) == 1:
            self._sentinel = None
            if self._owned:
                tracemalloc.stop()
                self._owned = False
        if intact:
            return peaks.pop(peak), None
        peaks.pop(0)
        return None, TRACEMALLOC_UNMEASURED

    def close(self) -> None:
        if self._owned:
            tracemalloc.stop()
            self._owned = False


_PROC = "/proc/self"
_CLEAR_REFS = f"{_PROC}/clear_refs"


def rss_available() -> bool:
    """Whether this process can reset its resident high-water mark (Linux)."""
    return os.access(_CLEAR_REFS, os.W_OK)


class RssProbe:
    """Resident set high-water mark, reset per region by writing 5 to clear_refs.

    The hot path is four system calls on file descriptors kept open, no file parsed:
    at start a write to ``clear_refs`` (the high-water mark becomes the resident
    set), a ``pread`` of ``statm`` (the resident set: the region's base) and a
    ``getrusage``; at stop a ``getrusage``. ``ru_maxrss`` is the larger of the
    reset mark and the process's historic peak at a thread exit or an exec (the
    kernel's ``signal->maxrss``, which clear_refs does not reset); where that
    historic floor may hide the region's peak, the mark is read from
    ``/proc/self/status`` instead (``VmHWM``), so the result is the kernel's mark
    either way.
    """

    mode = measured_by = "rss"
    __slots__ = ("_clear", "_floor", "_page", "_peaks", "_pid", "_statm", "_status")

    def __init__(self) -> None:
        if not rss_available():
            raise InvalidOptionError(
                "invalid value for --rtgov-memory: 'rss' needs Linux's writable "
                f"{_CLEAR_REFS}; use 'tracemalloc' or 'memray' here"
            )
        self._peaks = _StackedPeak()
        self._pid = 0
        self._clear = self._statm = self._status = -1
        self._floor: list[int] = []  # per open region: ru_maxrss (bytes) it cannot see under
        self._page = getpagesize()

    def _open(self) -> None:
        """(Re)open the files: once, and again in a forked child (its own /proc/self)."""
        self.close()
        self._clear = os.open(_CLEAR_REFS, os.O_WRONLY)
        self._statm = os.open(f"{_PROC}/statm", os.O_RDONLY)
        self._status = os.open(f"{_PROC}/status", os.O_RDONLY)
        self._pid = os.getpid()

    def _hwm(self, floor: int) -> int:
        """The high-water mark in bytes: ru_maxrss when it is above ``floor``."""
        maxrss = getrusage(RUSAGE_SELF).ru_maxrss * 1024
        if maxrss > floor:
            return maxrss
        status = os.pread(self._status, 8192, 0)
        at = status.index(b"VmHWM:")
        return int(status[at + 6 : status.index(b"kB", at)]) * 1024

    def start(self) -> None:
        if self._pid != os.getpid():
            self._open()
        # the enclosing region's mark, which the reset below hides
        hwm = self._hwm(self._floor[-1]) if self._floor else 0
        os.write(self._clear, b"5")
        base = int(os.pread(self._statm, 256, 0).split()[1]) * self._page
        maxrss = getrusage(RUSAGE_SELF).ru_maxrss * 1024
        # Right after the reset the mark is the resident set; a larger ru_maxrss is
        # the historic floor, under which getrusage cannot see this region's peak.
        self._floor.append(maxrss if maxrss > base else 0)
        self._peaks.push(base, hwm)

    def stop(self) -> tuple[int | None, str | None]:
        return self._peaks.pop(self._hwm(self._floor.pop())), None

    def close(self) -> None:
        for fd in (self._clear, self._statm, self._status):
            if fd >= 0:
                os.close(fd)
        self._clear = self._statm = self._status = -1
        self._pid = 0


class AutoProbe:
    """The default: precise where something needs it, cheap elsewhere.

    Each region is measured by ``precise`` (tracemalloc) when the capture asked for
    it (:attr:`precise_next`: the subjects a ``peak_memory`` gate selects, tests
    marked ``@pytest.mark.rtgov(memory=True)``), else by ``cheap`` (the resident set
    probe; :class:`OffProbe` where clear_refs is not writable: not measured). The
    probes keep their own stacks, so regions of either kind nest.
    :attr:`measured_by` names the probe of the region that stopped last.
    """

    mode = "auto"
    __slots__ = ("_cheap", "_open", "_precise", "measured_by", "precise_next")

    def __init__(self, precise: MemoryProbe, cheap: MemoryProbe) -> None:
        self._precise, self._cheap = precise, cheap
        self._open: list[MemoryProbe] = []
        self.precise_next = False
        self.measured_by: str | None = None

    def start(self) -> None:
        probe = self._precise if self.precise_next else self._cheap
        self._open.append(probe)
        probe.start()

    def stop(self) -> tuple[int | None, str | None]:
        probe = self._open.pop()
        peak, evidence = probe.stop()
        self.measured_by = probe.mode if peak is not None else None
        return peak, evidence

    def close(self) -> None:
        self._precise.close()
        self._cheap.close()


class MemrayProbe:
    """One memray capture per outermost region, kept under ``capture_dir``.

    memray allows one active Tracker per process, so a region nested inside a
    tracked one is not measured on its own (its allocations count in the outer one).
    """

    mode = measured_by = "memray"
    __slots__ = ("_capture_dir", "_counter", "_depth", "_path", "_tracker")

    def __init__(self, capture_dir: Path) -> None:
        # fail at configure time (a usage error naming the extra), not in the first test
        require("memray", extra="memray", feature="--rtgov-memory memray")

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


# Off Linux, where clear_refs never is: the peak resident set probe instead (peak_rss.py).
_OFF_LINUX = sys.platform != "linux"


def _rss_probe(cheap: bool) -> MemoryProbe:
    """``rss``: the clear_refs probe on Linux, the peak resident set probe elsewhere;
    ``cheap`` (auto's): not measured where neither can run, else a usage error."""
    if rss_available() or not _OFF_LINUX:
        return OffProbe() if cheap and not rss_available() else RssProbe()
    from pytest_rtgov.measure.peak_rss import PeakRssProbe, peak_rss_available

    return OffProbe() if cheap and not peak_rss_available() else PeakRssProbe()


def make_probe(mode: str, *, capture_dir: Path) -> MemoryProbe:
    """The probe for ``mode``; raises InvalidOptionError for unknown or unusable modes."""
    if mode == "auto":
        return AutoProbe(TracemallocProbe(), _rss_probe(cheap=True))
    if mode == "tracemalloc":
        return TracemallocProbe()
    if mode == "memray":
        return MemrayProbe(capture_dir)
    if mode == "rss":
        return _rss_probe(cheap=False)
    if mode == "off":
        return OffProbe()
    raise InvalidOptionError(
        f"invalid value for --rtgov-memory, expected one of "
        f"{', '.join(repr(m) for m in MEMORY_MODES)} (not {mode!r})"
    )
