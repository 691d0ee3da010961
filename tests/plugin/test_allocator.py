"""The allocator regime of a measuring session (measure/allocator.py): glibc's mmap
threshold pinned, so a kernel's large temporaries are mapped and faulted per call whatever
the process freed before, and the regime recorded. Page faults are counted, not timed."""

from __future__ import annotations

import json
import platform

import pytest

pytestmark = pytest.mark.skipif(
    platform.libc_ver()[0] != "glibc", reason="the pin is glibc's mallopt"
)

# Each round allocates and touches a fresh 1 MiB array after a first one was freed: with
# glibc's dynamic threshold that first free raises the threshold and later arrays come
# from the heap, already faulted in; pinned, every one is a fresh mapping (256 pages).
SUITE = """
import json, os, resource
import numpy as np
import pytest

FAULTS = []

def touch():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    a = np.ones(1 << 17)  # 1 MiB of float64
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


def test_a_session_pins_the_threshold_so_every_temporary_is_a_fresh_mapping(
    pytester, monkeypatch
):
    faults, environment = _faults(pytester, monkeypatch)
    assert len(faults) == 7
    assert min(faults[1:]) >= 200  # 256 pages of 4 KiB, faulted again each call
    assert environment["allocator"] == (
        "glibc pinned: mmap threshold 131072, trim threshold 131072"
    )


def test_system_leaves_the_dynamic_threshold_to_reuse_the_heap(pytester, monkeypatch):
    faults, environment = _faults(pytester, monkeypatch, "--rtgov-allocator", "system")
    assert min(faults[1:]) < 50  # the threshold rose at the first free: heap reuse
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
