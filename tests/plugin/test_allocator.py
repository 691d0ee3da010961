"""The allocator regime of a measuring session (measure/allocator.py): glibc's mmap
threshold pinned at 32 MiB, so a kernel's large temporaries come from a kept heap from
the first test on, whatever the process freed before, and the regime recorded. Page
faults are counted, not timed."""

from __future__ import annotations

import json
import platform

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the pin is glibc's mallopt"
)

# Each round allocates and touches an 8 MiB array and frees it. With glibc's dynamic
# threshold the first is a fresh mapping; its free raises the threshold, so the second
# comes from the heap, whose new pages fault in; from the third on the heap keeps them.
# Pinned, the first already comes from the heap, which keeps its pages: only the first
# faults. (Where a kernel's temporaries fault per call, a round's time is page faults.)
SUITE = """
import json, os, resource
import numpy as np
import pytest

FAULTS = []

def touch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 20)  # 8 MiB of float64
    FAULTS.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    del a

@pytest.mark.rtgov(rounds=6, warmup=1)
def test_temporaries():
    touch()

def test_write_faults():
    with open(os.environ["FAULTS_OUT"], "w") as f:
        json.dump(FAULTS, f)
"""


def _faults(pytester, monkeypatch, *args: str) -> tuple[list[int], dict]:
    out = pytester.path / "faults.json"
    monkeypatch.setenv("FAULTS_OUT", str(out))
    for name in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        monkeypatch.delenv(name, raising=False)
    pytester.makepyfile(test_alloc=SUITE)
    result = pytester.runpytest_subprocess("--rtgov", "-p", "no:randomly", *args)
    assert result.ret == 0
    base = pytester.path / ".rtgov"
    record = json.loads(
        (base / "runs" / f"{(base / 'latest').read_text().strip()}.json").read_text()
    )
    return json.loads(out.read_text()), record["environment"]


def test_a_session_pins_the_threshold_so_temporaries_reuse_a_kept_heap(pytester, monkeypatch):
    faults, environment = _faults(pytester, monkeypatch)
    assert len(faults) == 7
    # the heap's new pages fault in once (how many depends on the kernel's huge pages:
    # 468 here for 8 MiB), then never: the heap keeps them
    assert faults[0] >= 100 and max(faults[1:]) * 10 < faults[0]
    assert environment["allocator"] == (
        "glibc pinned: mmap threshold 33554432, trim threshold 67108864"
    )


def test_system_leaves_the_dynamic_threshold_which_faults_the_second_time(
    pytester, monkeypatch
):
    faults, environment = _faults(pytester, monkeypatch, "--rtgov-allocator", "system")
    # the first is a fresh mapping (numpy asks huge pages for it: few faults), its free
    # raises the threshold, and the second faults the heap's new pages in
    assert faults[1] >= 100 and max(faults[2:]) * 10 < faults[1]
    assert environment["allocator"].startswith("system: not pinned")


def test_a_threshold_the_user_set_is_respected_and_recorded(pytester, monkeypatch):
    monkeypatch.setenv("MALLOC_MMAP_THRESHOLD_", str(64 << 20))
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", str(128 << 20))
    out = pytester.path / "faults.json"
    monkeypatch.setenv("FAULTS_OUT", str(out))
    pytester.makepyfile(test_alloc=SUITE)
    assert pytester.runpytest_subprocess("--rtgov", "-p", "no:randomly").ret == 0
    faults = json.loads(out.read_text())
    assert min(faults[1:]) < 50  # below the user's thresholds: the heap, kept, reused
    base = pytester.path / ".rtgov"
    record = json.loads(
        (base / "runs" / f"{(base / 'latest').read_text().strip()}.json").read_text()
    )
    assert record["environment"]["allocator"] == (
        "system: set by the environment, MALLOC_MMAP_THRESHOLD_=67108864, "
        "MALLOC_TRIM_THRESHOLD_=134217728"
    )
    assert record["environment"]["env.MALLOC_MMAP_THRESHOLD_"] == str(64 << 20)
