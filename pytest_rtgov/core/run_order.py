"""Canonical order of a run's entries, whatever order xdist delivered them in.

Tests sort by node id; fixtures by (scope node id, name, param index), their setups by
(worker, requesting test); metrics by name (stable). So ``-n 2`` and ``-n 0`` give the
same entries in the same order (docs/architecture.md, "xdist").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from pytest_rtgov.core.records import FixtureEntry, FixtureSetup, Metric, TestEntry

__all__ = ["canonical_run", "sorted_metrics"]


def sorted_metrics(metrics: Iterable[Metric]) -> tuple[Metric, ...]:
    """By name; stable: two records of one name keep the order they were made in."""
    return tuple(sorted(metrics, key=lambda m: m.name))


def _canonical_test(test: TestEntry) -> TestEntry:
    if not test.metrics and not test.markers:
        return test  # the usual case, checked before any sorting
    metrics = sorted_metrics(test.metrics)
    markers = tuple(sorted(set(test.markers)))
    if metrics == test.metrics and markers == test.markers:
        return test  # already canonical: no copy (this runs once per test)
    return dataclasses.replace(test, metrics=metrics, markers=markers)


def canonical_run(
    *,
    tests: Iterable[TestEntry],
    fixture_setups: Iterable[tuple[FixtureEntry, FixtureSetup]],
) -> tuple[tuple[TestEntry, ...], tuple[FixtureEntry, ...]]:
    """Order entries canonically, whatever order xdist delivered them in.

    Tests sort by node id; fixtures by (scope node id, name, param index), their
    setups by (worker, requesting test); metrics by name.
    """
    ordered_tests = tuple(sorted((_canonical_test(t) for t in tests), key=lambda t: t.nodeid))
    grouped: dict[tuple[str, str, int], tuple[FixtureEntry, list[FixtureSetup]]] = {}
    for entry, setup in fixture_setups:
        setup = FixtureSetup(
            worker=setup.worker,
            requested_by=setup.requested_by,
            outcome=setup.outcome,
            sample=setup.sample,
            metrics=sorted_metrics(setup.metrics),
            stage=setup.stage,
            checkpoints=setup.checkpoints,
        )
        grouped.setdefault(entry.key, (entry, []))[1].append(setup)
    ordered_fixtures = tuple(
        FixtureEntry(
            nodeid=entry.nodeid,
            name=entry.name,
            scope=entry.scope,
            param_index=entry.param_index,
            setups=tuple(sorted(setups, key=lambda s: (s.worker, s.requested_by))),
        )
        for key, (entry, setups) in sorted(grouped.items())
    )
    return ordered_tests, ordered_fixtures
