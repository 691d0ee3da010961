"""What runs off Linux too: the peak resident set probe (measure/peak_rss.py) and the
ledger's lock through portalocker. Both are exercised here, on any platform."""

from __future__ import annotations

import errno
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.extras import MissingExtraError
from pytest_rtgov.measure import memory
from pytest_rtgov.measure.memory import AutoProbe, OffProbe, make_probe
from pytest_rtgov.measure.peak_rss import PeakRssProbe

pytest.importorskip("psutil")

MIB = 1 << 20

# A fresh process, whose peak is known: (Linux) it may start at its parent's resident
# set, kept across the exec, so the region allocates 64 MiB above that peak.
CHILD = """
import numpy
from pytest_rtgov.measure.peak_rss import PeakRssProbe
probe = PeakRssProbe()
size = max(probe._peak() - probe._rss(), 0) + (64 << 20)
probe.start()
data = numpy.ones(size // 8)  # every page touched
probe.start()
small = numpy.ones(1 << 10)
inner = probe.stop()
outer = probe.stop()
del data
probe.start()
again = numpy.ones(1 << 17)  # 1 MiB, under the peak before it
under = probe.stop()
print(size, outer[0], inner[0], under[0])
"""


def test_a_region_that_raises_the_peak_is_measured_one_under_it_is_not():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    size, outer, inner, under = done.stdout.split()
    assert int(size) - 2 * MIB <= int(outer) <= int(size) + 16 * MIB
    assert inner == "None"  # stayed under the peak the outer region had reached
    assert under == "None"  # never 0 B


@pytest.fixture
def off_linux(monkeypatch):
    """As on macOS or Windows: no clear_refs, the peak resident set probe instead."""
    monkeypatch.setattr(memory, "_OFF_LINUX", True)
    monkeypatch.setattr(memory, "rss_available", lambda: False)


def test_off_linux_rss_and_auto_use_the_peak_probe(off_linux, tmp_path):
    assert isinstance(make_probe("rss", capture_dir=tmp_path), PeakRssProbe)
    auto = make_probe("auto", capture_dir=tmp_path)
    assert isinstance(auto, AutoProbe) and isinstance(auto._cheap, PeakRssProbe)


def test_off_linux_without_psutil_rss_names_it_and_auto_does_not_measure(
    off_linux, monkeypatch, tmp_path
):
    monkeypatch.setitem(sys.modules, "psutil", None)
    with pytest.raises(MissingExtraError, match="--rtgov-memory rss needs psutil"):
        make_probe("rss", capture_dir=tmp_path)
    auto = make_probe("auto", capture_dir=tmp_path)
    assert isinstance(auto, AutoProbe) and isinstance(auto._cheap, OffProbe)


def test_linux_keeps_its_clear_refs_probe(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "_OFF_LINUX", False)
    monkeypatch.setattr(memory, "rss_available", lambda: False)
    auto = make_probe("auto", capture_dir=tmp_path)
    assert isinstance(auto, AutoProbe) and isinstance(auto._cheap, OffProbe)
    with pytest.raises(memory.InvalidOptionError, match="'rss' needs Linux's writable"):
        make_probe("rss", capture_dir=tmp_path)


def test_a_lock_the_system_refuses_is_its_error_not_a_wait(monkeypatch, tmp_path: Path):
    """Only "held by another" is waited for; any other failure of the lock call (NFS
    without locks: ENOLCK) surfaces as the system's OSError, as with fcntl before."""
    import portalocker

    from pytest_rtgov.store.ledger import Ledger

    def refuse(file, flags):
        error = OSError(errno.ENOLCK, "No locks available")
        raise portalocker.LockException(error) from error

    monkeypatch.setattr(portalocker, "lock", refuse)
    with pytest.raises(OSError, match="No locks available"):
        with Ledger(tmp_path / "ledger").append(timeout=0):
            pass


def test_the_lock_excludes_a_flock_holder_and_says_who(tmp_path: Path):
    """portalocker's lock is flock on POSIX: a holder using flock(2) (an older writer)
    still excludes a new one, and the holder's line in log.lock is still read."""
    if sys.platform == "win32":
        pytest.skip("flock is POSIX")
    import fcntl

    from pytest_rtgov.store.ledger import Ledger, LedgerLockTimeout

    ledger = Ledger(tmp_path / "ledger")
    ledger.directory.mkdir(parents=True)
    with open(ledger.lock_path, "a+b") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        held.write(b"4242 2026-01-01T00:00:00Z\n")
        held.flush()
        with pytest.raises(LedgerLockTimeout, match="held by pid 4242"):
            with ledger.append(timeout=0):
                pass
    with ledger.append(timeout=0):  # released: taken at once
        pass
