"""The auto memory mode's probes: the cheap resident set probe, the choice per region,
the probe recorded per sample, and gates that never judge a cheap value."""

from __future__ import annotations

import mmap
import tracemalloc
from types import SimpleNamespace

import numpy as np
import pytest

from pytest_rtgov.core.gates_config import Gate
from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.rounds import parse_rounds_marker
from pytest_rtgov.core.subjects import Subject, subjects_of
from pytest_rtgov.errors import InvalidOptionError
from pytest_rtgov.measure import memory
from pytest_rtgov.measure.memory import AutoProbe, OffProbe, RssProbe, make_probe, rss_available
from pytest_rtgov.measure.region import Meter
from pytest_rtgov.plugin.memory_select import FixtureSelection, memory_selection

MIB = 1 << 20
needs_rss = pytest.mark.skipif(not rss_available(), reason="no writable /proc/self/clear_refs")


def fresh(nbytes: int) -> mmap.mmap:
    """``nbytes`` of fresh pages, faulted in: an anonymous mapping, touched. Not a numpy
    array: malloc may serve that from heap pages already resident, depending on what the
    process (an xdist worker that ran other tests, the allocator they pinned) freed."""
    pages = mmap.mmap(-1, nbytes)
    for offset in range(0, nbytes, mmap.PAGESIZE):  # one byte a page: no copy resident
        pages[offset] = 1
    return pages


@needs_rss
def test_rss_probe_sees_fresh_pages_and_nests():
    probe = RssProbe()
    probe.start()
    outer = fresh(40 * MIB)
    probe.start()
    inner = fresh(60 * MIB)
    inner.close()
    inner_peak, evidence = probe.stop()
    outer_peak, _ = probe.stop()
    outer.close()
    probe.close()
    assert evidence is None
    assert 0.95 * 60 * MIB <= inner_peak <= 1.1 * 60 * MIB
    assert outer_peak >= 0.95 * 100 * MIB


@needs_rss
def test_rss_probe_reads_the_mark_from_proc_when_a_historic_peak_hides_it(monkeypatch):
    """ru_maxrss cannot fall below the process's peak at a thread exit (clear_refs does
    not reset it): the probe then reads VmHWM, and the result is the same."""
    real = memory.getrusage
    historic = real(memory.RUSAGE_SELF).ru_maxrss + (1 << 30) // 1024  # KiB

    def stale(who):
        return SimpleNamespace(ru_maxrss=max(real(who).ru_maxrss, historic))

    monkeypatch.setattr(memory, "getrusage", stale)
    probe = RssProbe()
    probe.start()
    data = fresh(48 * MIB)
    peak, _ = probe.stop()
    data.close()
    probe.close()
    assert 0.95 * 48 * MIB <= peak <= 1.1 * 48 * MIB


def test_auto_probe_measures_precisely_only_when_asked():
    cheap = RssProbe() if rss_available() else OffProbe()
    probe = AutoProbe(memory.TracemallocProbe(), cheap)
    meter = Meter(probe)
    probe.precise_next = True
    region = meter.open()
    array = np.ones(MIB)  # 8 MiB, as numpy reports it to tracemalloc
    del array
    precise = meter.close(region)
    assert not tracemalloc.is_tracing()
    assert precise["memory_probe"] == "tracemalloc"
    assert abs(precise["peak_memory_bytes"] - 8 * MIB) <= 0.01 * 8 * MIB
    probe.precise_next = False
    region = meter.open()
    assert not tracemalloc.is_tracing()  # no hook on the region's allocations
    fresh(48 * MIB).close()
    sample = meter.close(region)
    probe.close()
    if rss_available():
        assert sample["memory_probe"] == "rss"
        assert sample["peak_memory_bytes"] >= 0.9 * 48 * MIB
    else:
        assert sample["peak_memory_bytes"] is None and "memory_probe" not in sample
    assert Sample(**sample).to_dict() == sample


def test_auto_regions_of_either_probe_nest():
    probe = AutoProbe(memory.TracemallocProbe(), OffProbe())
    probe.precise_next = False
    probe.start()  # a cheap fixture ...
    probe.precise_next = True
    probe.start()  # ... asking for a precise one inside its body
    data = bytes(4 * MIB)
    inner, _ = probe.stop()
    assert probe.measured_by == "tracemalloc"
    outer, _ = probe.stop()
    del data
    assert probe.measured_by is None and outer is None
    assert abs(inner - 4 * MIB) <= 0.01 * 4 * MIB


def test_auto_without_clear_refs_is_not_measured_never_zero(monkeypatch, tmp_path):
    monkeypatch.setattr(memory, "rss_available", lambda: False)
    probe = make_probe("auto", capture_dir=tmp_path)
    meter = Meter(probe)
    sample = meter.close(meter.open())
    assert sample["peak_memory_bytes"] is None
    with pytest.raises(InvalidOptionError, match="'rss' needs Linux's writable"):
        make_probe("rss", capture_dir=tmp_path)


def test_memory_marker_argument():
    assert parse_rounds_marker((), {"memory": True}).memory is True
    assert parse_rounds_marker((), {"rounds": 3}).memory is False
    with pytest.raises(InvalidOptionError, match="'memory': expected True or False"):
        parse_rounds_marker((), {"memory": 1})


def test_the_selection_is_the_memory_gates_own():
    gates = SimpleNamespace(
        gates=(
            Gate(name="t", metric="wall_time", tests=("a::*",)),
            Gate(name="m", metric="peak_memory", tests=("b::*",), fixtures=("data*",)),
            Gate(name="n", metric="peak_memory", markers=("heavy",)),
        )
    )
    selection = memory_selection(gates)
    assert selection == {"tests": ["b::*"], "markers": ["heavy"], "fixtures": ["data*"]}
    fixtures = FixtureSelection(selection)
    assert fixtures.wants("dataset") and not fixtures.wants("model")
    assert memory_selection(SimpleNamespace(gates=gates.gates[:1])) is None
    assert not FixtureSelection(None).wants("dataset")


def _record(mode, samples):
    from pytest_rtgov.core.records import RunRecord, TestEntry

    return RunRecord(
        run_id="r", started_at="s", ended_at="e", mode="gate", pytest_args=(),
        memory_mode=mode, backend="numpy", workers=("main",), environment={},
        tests=(TestEntry("t::x", "passed", "main", rounds=len(samples), samples=samples),),
        fixtures=(),
    )


def test_gates_never_judge_the_auto_modes_cheap_values():
    from pytest_rtgov.core.gates import evaluate_gates  # noqa: F401  (the judge reads these)

    samples = (
        Sample(10, 10, peak_memory_bytes=100, memory_probe="tracemalloc"),
        Sample(10, 10, peak_memory_bytes=9000, memory_probe="rss"),
    )
    (auto,) = subjects_of(_record("auto", samples))
    assert auto.measurement("peak_memory") == [100.0]
    assert auto.measurement("wall_time") == [1e-08, 1e-08]
    (chosen,) = subjects_of(_record("rss", samples))  # the user chose rss: judged
    assert chosen.measurement("peak_memory") == [100.0, 9000.0]
    old = Sample(10, 10, peak_memory_bytes=5)  # a record older than memory_probe
    assert Subject("x", "test", "x", (), True, (old,), (), cheap_probe="rss").measurement(
        "peak_memory"
    ) == [5.0]


def test_a_memory_gate_on_cheap_values_only_says_why():
    from pytest_rtgov.core.gates import evaluate_gates
    from pytest_rtgov.core.gates_config import GatesConfig
    from pytest_rtgov.core.subjects import BaselineView

    record = _record("auto", (Sample(10, 10, peak_memory_bytes=9000, memory_probe="rss"),))
    gate = Gate(name="m", metric="peak_memory", tests=("t::*",), maximum=1e9)
    config = GatesConfig(source="gates.toml", gates=(gate,))
    (result,), _ = evaluate_gates(config, record, BaselineView({}, {}))
    assert result.status == "missing"
    assert "cheap rss probe only" in result.reason
    assert "rtgov(memory=True)" in result.reason
