"""Sharded runs: which shard a test belongs to, and one record out of the shards' records.

``pytest --rtgov --rtgov-shard I/N`` runs the tests whose node id hashes to shard I of
N. The hash is sha256 of the node id, so the split does not depend on the collection
order, on ``PYTHONHASHSEED`` or on the machine: every shard job (and every xdist worker
of a shard) computes the same one, and the N shards are disjoint and cover the suite.

>>> parse_shard("2/4")
(2, 4)
>>> sorted(i for i in range(1, 4) if in_shard("test_a.py::test_one", i, 3))
[2]

:func:`merge_records` puts the shards' run records back together into the record an
unsharded run of the same tests would have written, so that gating after the merge
judges exactly what an unsharded ``--rtgov-gate`` run judges. What cannot be the same
is said where it is decided:

- **Workers.** Each shard is its own session, with its own ``main`` or ``gw0``,
  ``gw1``...; two processes called ``gw0`` must not be confused (calibration is per
  worker, and a session fixture has one setup per process). A merged record names
  each worker ``<shard run id>/<worker>``: the same path under which that process's
  captures and artifacts lie in the state directory (``captures/<run id>/<worker>``).
  The list of shard run ids, the merge's provenance, is therefore in ``workers``:
  no new field, and the schema stays ``rtgov.run/1``. An unsharded ``-n 2`` run shows
  one setup of a session fixture per worker; a merged run shows one per shard process,
  which is what happened.
- **Exit status.** ``1`` when any shard had failed tests, else the largest; a shard
  that collected nothing (``5``) counts only when every shard did, and a shard's own
  gate breach (``6``) does not count (gates are evaluated again after the merge).
- **Gate results and verdict** are cleared: gating happens after the merge.
- **pytest_args** are the first shard's with ``--rtgov-shard`` removed: the command
  that runs the same tests unsharded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Final

from pytest_rtgov.core.fingerprint import describe_difference, fingerprint
from pytest_rtgov.core.quarantine_record import merge_sections
from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    RunRecord,
    TestEntry,
)
from pytest_rtgov.core.run_order import canonical_run
from pytest_rtgov.errors import InvalidOptionError, RtgovError

__all__ = [
    "SHARD_OPTION",
    "ShardMergeError",
    "in_shard",
    "merge_records",
    "merged_exit_status",
    "parse_shard",
    "shard_of",
    "strip_shard_option",
]

SHARD_OPTION: Final = "--rtgov-shard"
_SHARD_TEXT = re.compile(r"^\s*([0-9]+)\s*/\s*([0-9]+)\s*$")
# The code a record was measured on: shards of different code must not be merged.
_CODE_KEYS: Final = ("git.commit", "git.dirty", "git.diff_sha256")
_NO_TESTS_COLLECTED: Final = 5
_GATE_BREACHED: Final = 6
_TESTS_FAILED: Final = 1


class ShardMergeError(RtgovError):
    """Run records that cannot be merged into one run: the message names them and why."""


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``, 1-based, with ``1 <= I <= N``.

    >>> parse_shard(" 1 / 2 ")
    (1, 2)
    """
    match = _SHARD_TEXT.match(text)
    if match is not None:
        index, count = int(match.group(1)), int(match.group(2))
        if 1 <= index <= count:
            return index, count
    raise InvalidOptionError(
        f'invalid value for {SHARD_OPTION}, expected I/N with 1 <= I <= N, like "1/4" '
        f"(got {text!r})"
    )


def in_shard(nodeid: str, index: int, count: int) -> bool:
    """Whether the test ``nodeid`` belongs to shard ``index`` (1-based) of ``count``."""
    if not 1 <= index <= count:
        raise InvalidOptionError(
            f"shard {index}/{count}: expected 1 <= index <= count for {SHARD_OPTION}"
        )
    digest = hashlib.sha256(nodeid.encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") % count == index - 1


def shard_of(pytest_args: Sequence[str]) -> tuple[int, int] | None:
    """The ``--rtgov-shard`` of a recorded invocation (the last one wins, as in argparse),
    or None when it was not given on the command line."""
    found: tuple[int, int] | None = None
    args = list(pytest_args)
    for position, arg in enumerate(args):
        if arg == SHARD_OPTION and position + 1 < len(args):
            found = parse_shard(args[position + 1])
        elif arg.startswith(SHARD_OPTION + "="):
            found = parse_shard(arg[len(SHARD_OPTION) + 1 :])
    return found


def strip_shard_option(pytest_args: Sequence[str]) -> tuple[str, ...]:
    """The invocation without ``--rtgov-shard``: the same tests, unsharded.

    >>> strip_shard_option(["-n", "2", "--rtgov", "--rtgov-shard", "1/2", "tests"])
    ('-n', '2', '--rtgov', 'tests')
    """
    out: list[str] = []
    skip_next = False
    for arg in pytest_args:
        if skip_next:
            skip_next = False
        elif arg == SHARD_OPTION:
            skip_next = True
        elif not arg.startswith(SHARD_OPTION + "="):
            out.append(arg)
    return tuple(out)


def merge_records(records: Sequence[RunRecord], *, run_id: str) -> RunRecord:
    """One run record out of the records of the shards of one run.

    Refuses (:class:`ShardMergeError`) records that do not belong together: the same
    run twice, shards of different splits or an incomplete set of shards, different
    environment fingerprints, code, backend or memory mode, different calibration
    kernels, one test in two shards, or shards that did not follow one schedule
    (``--rtgov-schedule``). Gate results and verdict are left empty; the quarantine
    sections are merged (``core.quarantine_record.merge_sections``).
    """
    ordered = _in_shard_order(records)
    first = ordered[0]
    for other in ordered[1:]:
        _check_compatible(first, other)
    _check_disjoint(ordered)
    _check_calibration(ordered)
    _check_schedules(ordered)

    tests: list[TestEntry] = []
    setups: list[tuple[FixtureEntry, FixtureSetup]] = []
    workers: set[str] = set()
    calibration: dict[str, int] = {}
    kernel = ""
    for record in ordered:
        rename = _worker_names(record)
        tests += [dataclasses.replace(t, worker=rename(t.worker)) for t in record.tests]
        setups += [
            (entry, dataclasses.replace(setup, worker=rename(setup.worker)))
            for entry in record.fixtures
            for setup in entry.setups
        ]
        workers.update(rename(w) for w in record.workers)
        if record.calibration:
            kernel = str(record.calibration.get("kernel", ""))
            for worker, median_ns in dict(record.calibration.get("workers", {})).items():
                calibration[rename(str(worker))] = int(median_ns)
    merged_tests, merged_fixtures = canonical_run(tests=tests, fixture_setups=setups)
    return RunRecord(
        run_id=run_id,
        started_at=min(r.started_at for r in ordered),
        ended_at=max(r.ended_at for r in ordered),
        mode="record",
        pytest_args=strip_shard_option(first.pytest_args),
        memory_mode=first.memory_mode,
        backend=first.backend,
        workers=tuple(sorted(workers)),
        environment=dict(first.environment),
        tests=merged_tests,
        fixtures=merged_fixtures,
        exit_status=merged_exit_status(r.exit_status for r in ordered),
        gate_results=(),
        verdict={},
        calibration={"kernel": kernel, "workers": dict(sorted(calibration.items()))}
        if calibration
        else {},
        quarantine=merge_sections(r.quarantine for r in ordered),
    )


def merged_exit_status(statuses: Iterable[int]) -> int:
    """pytest's exit status of the whole run, from the shards' statuses.

    >>> merged_exit_status([0, 5]), merged_exit_status([5, 5]), merged_exit_status([4, 1])
    (0, 5, 1)
    """
    values = list(statuses)
    counted = [0 if s == _GATE_BREACHED else s for s in values if s != _NO_TESTS_COLLECTED]
    if not counted:
        return _NO_TESTS_COLLECTED if values else 0
    if _TESTS_FAILED in counted:
        return _TESTS_FAILED
    return max(counted)


def _worker_names(record: RunRecord) -> Callable[[str], str]:
    prefix = record.run_id + "/"
    return lambda worker: prefix + worker


def _in_shard_order(records: Sequence[RunRecord]) -> list[RunRecord]:
    """The records sorted by shard index, after checking they form one complete split."""
    if not records:
        raise ShardMergeError("no run records to merge")
    seen: dict[str, int] = {}
    for position, record in enumerate(records):
        if record.run_id in seen:
            raise ShardMergeError(f"run {record.run_id} is given twice")
        seen[record.run_id] = position
    specs: list[tuple[tuple[int, int] | None, RunRecord]] = []
    for record in records:
        try:
            specs.append((shard_of(record.pytest_args), record))
        except InvalidOptionError as exc:
            raise ShardMergeError(f"run {record.run_id}: {exc}") from None
    sharded = [(spec, r) for spec, r in specs if spec is not None]
    if not sharded:
        return list(records)  # runs of disjoint test selections, merged as given
    if len(sharded) != len(specs):
        plain = next(r.run_id for spec, r in specs if spec is None)
        raise ShardMergeError(
            f"run {plain} was not run with {SHARD_OPTION} but run {sharded[0][1].run_id} was: "
            "merge the shards of one split, or only unsharded runs"
        )
    counts = sorted({spec[1] for spec, _ in sharded})
    if len(counts) > 1:
        raise ShardMergeError(
            "shards of different splits: "
            + ", ".join(f"run {r.run_id} is {s[0]}/{s[1]}" for s, r in sharded)
        )
    count = counts[0]
    by_index: dict[int, RunRecord] = {}
    for (index, _), record in sharded:
        if index in by_index:
            raise ShardMergeError(
                f"shard {index}/{count} is given twice: runs {by_index[index].run_id} "
                f"and {record.run_id}"
            )
        by_index[index] = record
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in by_index]
    if missing:
        given = ", ".join(f"{i}/{count} = run {r.run_id}" for i, r in sorted(by_index.items()))
        raise ShardMergeError(
            f"incomplete split: shard(s) {', '.join(missing)} missing (given: {given})"
        )
    return [by_index[i] for i in sorted(by_index)]


def _differences(a: Mapping[str, str], b: Mapping[str, str], keys: Iterable[str]) -> str:
    return "; ".join(
        f"{key}: {a.get(key, '')!r} vs {b.get(key, '')!r}"
        for key in keys
        if a.get(key, "") != b.get(key, "")
    )


def _check_compatible(first: RunRecord, other: RunRecord) -> None:
    pair = f"runs {first.run_id} and {other.run_id}"
    if fingerprint(first.environment) != fingerprint(other.environment):
        raise ShardMergeError(
            f"{pair} ran on different environments "
            f"({describe_difference(first.environment, other.environment)}): "
            "their timings and memory cannot form one run"
        )
    code = _differences(first.environment, other.environment, _CODE_KEYS)
    if code:
        raise ShardMergeError(f"{pair} tested different code ({code})")
    for name in ("backend", "memory_mode"):
        mine, theirs = getattr(first, name), getattr(other, name)
        if mine != theirs:
            raise ShardMergeError(f"{pair} differ in {name}: {mine!r} vs {theirs!r}")


def _check_schedules(records: Sequence[RunRecord]) -> None:
    """Shards run under ``--rtgov-schedule`` followed one schedule (core/schedule_check.py)."""
    from pytest_rtgov.core.schedule_check import shard_schedule_problem

    problem = shard_schedule_problem(
        [(r.run_id, r.schedule, [t.nodeid for t in r.tests]) for r in records]
    )
    if problem is not None:
        raise ShardMergeError(f"the shards did not follow one schedule: {problem}")


def _check_calibration(records: Sequence[RunRecord]) -> None:
    kernels: dict[str, str] = {}
    for record in records:
        if record.calibration:
            kernels.setdefault(str(record.calibration.get("kernel", "")), record.run_id)
    if len(kernels) > 1:
        runs = ", ".join(f"run {run_id}: {kernel!r}" for kernel, run_id in sorted(kernels.items()))
        raise ShardMergeError(
            f"runs were calibrated with different kernels ({runs}): "
            "their calibrated times are not in one unit"
        )


def _check_disjoint(records: Sequence[RunRecord]) -> None:
    owner: dict[str, str] = {}
    for record in records:
        for test in record.tests:
            previous = owner.setdefault(test.nodeid, record.run_id)
            if previous != record.run_id:
                raise ShardMergeError(
                    f"test {test.nodeid} is in runs {previous} and {record.run_id}: "
                    "shards must not overlap"
                )
