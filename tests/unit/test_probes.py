"""Memory probes and the measured region."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.core.records import Sample
from pytest_rtgov.errors import InvalidOptionError
from pytest_rtgov.measure.memory import TracemallocProbe, _StackedPeak, make_probe
from pytest_rtgov.measure.region import Meter


def test_tracemalloc_probe_sees_numpy_arrays_and_stops_tracing():
    assert not tracemalloc.is_tracing()
    probe = TracemallocProbe()
    probe.start()
    a = np.ones(1 << 20)  # 8 MiB
    del a
    peak, evidence = probe.stop()
    assert 8 << 20 <= peak < 9 << 20
    assert evidence is None
    assert not tracemalloc.is_tracing()


def test_nested_regions_carry_the_inner_peak_out():
    probe = TracemallocProbe()
    probe.start()
    outer = np.ones(1 << 17)  # 1 MiB before the inner region
    probe.start()
    inner = np.ones(1 << 20)  # 8 MiB inside it
    del inner
    inner_peak, _ = probe.stop()
    outer_peak, _ = probe.stop()
    del outer
    assert 8 << 20 <= inner_peak < 9 << 20
    assert outer_peak >= (8 << 20) + (1 << 20)


def test_probe_leaves_foreign_tracing_on():
    tracemalloc.start()
    try:
        probe = TracemallocProbe()
        probe.start()
        probe.stop()
        assert tracemalloc.is_tracing()
    finally:
        tracemalloc.stop()


@given(st.lists(st.integers(0, 1000), min_size=1, max_size=20))
def test_stacked_peak_outer_never_below_inner(levels):
    """Inner regions opened at each level: the outer peak covers every inner peak."""
    peaks = _StackedPeak()
    peaks.push(current=0, peak_so_far=0)
    inner_results = []
    for level in levels:
        peaks.push(current=level, peak_so_far=level)
        inner_results.append((level, peaks.pop(peak=level * 2)))
    outer = peaks.pop(peak=0)
    assert all(result == level for level, result in inner_results)
    assert outer == max(level * 2 for level in levels)


def test_unknown_memory_mode_names_the_choices(tmp_path):
    with pytest.raises(InvalidOptionError, match="expected one of 'auto', 'tracemalloc', 'memray'"):
        make_probe("heap", capture_dir=tmp_path)


def test_meter_records_partial_regions_and_relative_evidence(tmp_path):
    meter = Meter(make_probe("memray", capture_dir=tmp_path / "caps"), relative_to=str(tmp_path))
    region = meter.open()
    data = np.ones(1 << 18)
    sample = meter.close(region, completed=False, warmup=True)
    del data
    assert sample["completed"] is False and sample["warmup"] is True
    assert sample["peak_memory_bytes"] >= 2 << 20
    assert sample["evidence"].startswith("caps/region-")
    assert (tmp_path / sample["evidence"]).is_file()
    assert sample["wall_ns"] > 0
    assert Sample(**sample).to_dict() == sample  # the dict is a Sample's wire form
