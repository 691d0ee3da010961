"""Validation of user metrics, digests and marker arguments."""

from __future__ import annotations

import hashlib
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from pytest_rtgov.core.metrics import BUILTIN_METRICS, digest_metric, metric_unit, value_metric
from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.rounds import RoundsSpec, parse_rounds_marker
from pytest_rtgov.core.stats import counted, paired_effect, summarize
from pytest_rtgov.errors import InvalidMetricError, InvalidOptionError
from pytest_rtgov.plugin.ab import _ab_exceeds


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_finite_floats_are_accepted_exactly(value):
    assert value_metric("m", value).value == value


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf, np.float32("nan")])
def test_non_finite_values_are_refused(value):
    with pytest.raises(InvalidMetricError, match="expected a finite number"):
        value_metric("val_loss", value)


@pytest.mark.parametrize("value", [True, "0.9", None, [0.9], np.array([1.0, 2.0])])
def test_non_numbers_are_refused(value):
    with pytest.raises(InvalidMetricError, match="expected a real number"):
        value_metric("val_accuracy", value)


def test_numpy_scalars_and_zero_d_arrays_are_numbers():
    assert value_metric("a", np.float32(0.5)).value == 0.5
    assert value_metric("a", np.array(3)).value == 3.0
    assert value_metric("a", np.int64(7)).value == 7.0


@pytest.mark.parametrize("name", ["", "9lives", "has space", "x" * 200, None])
def test_bad_names_are_refused(name):
    with pytest.raises(InvalidMetricError, match="invalid metric name"):
        value_metric(name, 1.0)


def test_direction_must_be_a_bool_or_none():
    with pytest.raises(InvalidMetricError, match="higher_is_better"):
        value_metric("a", 1.0, higher_is_better="yes")  # type: ignore[arg-type]


def test_digest_of_bytes_is_plain_sha256():
    assert digest_metric("d", b"abc").value == "sha256:" + hashlib.sha256(b"abc").hexdigest()


def test_array_digest_covers_dtype_and_shape():
    a = np.arange(6, dtype=np.int64)
    same = digest_metric("d", a.copy()).value
    assert digest_metric("d", a).value == same
    assert digest_metric("d", a.reshape(2, 3)).value != same
    assert digest_metric("d", a.astype(np.int32)).value != same
    assert digest_metric("d", a[::-1].copy()).value != same
    with pytest.raises(InvalidMetricError, match="expected bytes or an array"):
        digest_metric("d", [1, 2, 3])


def test_rounds_marker_defaults_and_values():
    assert parse_rounds_marker((), {}) == RoundsSpec(1, 0)
    assert parse_rounds_marker((), {"rounds": 7, "warmup": 1}) == RoundsSpec(7, 1)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((3,), {}, "keyword arguments only"),
        ((), {"rounds": 0}, "'rounds': expected an integer from 1"),
        ((), {"rounds": 2.5}, "not 2.5"),
        ((), {"rounds": True}, "not True"),
        ((), {"warmup": -1}, "'warmup'"),
        ((), {"round": 3}, "unknown rtgov marker argument"),
    ],
)
def test_rounds_marker_rejects(args, kwargs, match):
    with pytest.raises(InvalidOptionError, match=match):
        parse_rounds_marker(args, kwargs)


def test_the_catalogue_names_every_builtin_metric_once():
    assert list(BUILTIN_METRICS) == [
        "wall_time",
        "cpu_time",
        "peak_memory",
        "gpu_time",
        "gpu_memory",
    ]
    for name, info in BUILTIN_METRICS.items():
        assert info.name == name
        assert hasattr(Sample(1, 1), info.field)  # read from each sample
        assert info.unit == ("s" if name.endswith("_time") else "bytes")
        assert info.higher_is_better is False and info.machine_dependent is True
    with pytest.raises(TypeError):
        BUILTIN_METRICS["loss"] = BUILTIN_METRICS["wall_time"]  # type: ignore[index]


def test_units_of_builtin_calibrated_and_recorded_metrics():
    assert metric_unit("wall_time") == "s"
    assert metric_unit("cpu_time@calibrated") == "calibration units"
    assert metric_unit("val_loss", "nats") == "nats"
    assert metric_unit("val_loss@calibrated") == ""


def test_only_completed_current_non_warmup_samples_count():
    samples = [
        Sample(5, 5),
        Sample(100, 100, variant="baseline"),
        Sample(200, 200, warmup=True),
        Sample(300, 300, completed=False),
        Sample(7, 3),
    ]
    assert counted(samples) == [samples[0], samples[4]]
    summary = summarize(samples)
    assert summary is not None
    assert (summary.n, summary.wall_median_ns, summary.cpu_median_ns) == (2, 6, 4)
    assert summarize([Sample(9, 9, completed=False)]) is None  # nothing counts: no row


def test_paired_effect_is_the_median_paired_ratio():
    effect = paired_effect([(1.0, 1.0), (1.08, 1.0), (1.12, 1.0), (1.3, 1.0)])
    assert effect is not None
    assert effect.ratio == pytest.approx(1.10)
    assert effect.relative == pytest.approx(0.10)
    assert effect.worse == pytest.approx(0.10)
    assert paired_effect([]) is None


def _ab_samples(pairs):
    out = []
    for current, baseline in pairs:
        for variant, ns in (("current", current), ("baseline", baseline)):
            out.append(Sample(ns, ns, variant=variant).to_dict())
    return out


def test_the_ab_loop_re_measures_on_the_gates_effect():
    # Ratios 1.0, 1.08, 1.12, 1.3: the median paired ratio is 1.10, as the gate computes it
    # (an upper median, 1.12, would call for re-measurement at a 11 % threshold).
    samples = _ab_samples([(1000, 1000), (1080, 1000), (1120, 1000), (1300, 1000)])
    assert not _ab_exceeds(samples, 0, {"min_pct": 11})
    assert _ab_exceeds(samples, 0, {"min_pct": 9})
    assert _ab_exceeds(samples, 0, {"min_abs": 90e-9})
    assert not _ab_exceeds(samples, 0, {"min_abs": 110e-9})
    assert not _ab_exceeds(samples, 1, {"min_pct": 0})  # no pairs in that block
