"""Run records: what one pytest session measured, as frozen values.

Every record class has ``to_dict()`` returning builtin types only (records cross
xdist's wire and are written as JSON). The classes' field annotations are the
schema of a record file: ``RunRecord.from_dict()`` validates decoded JSON against
them with msgspec (``core/schema.py``), names the place of the first problem, and
never mutates its input. The format is described in docs/run-record.md. Their
canonical order is ``core/run_order.py``'s.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar

import msgspec

from pytest_rtgov.core.array_checkpoints import ArrayCheckpoint
from pytest_rtgov.core.canonical import PRESORTED_ENCODER, canonical_json
from pytest_rtgov.core.schema import convert, one_of, require_keys
from pytest_rtgov.errors import RecordFormatError

__all__ = [
    "SCHEMA",
    "FixtureEntry",
    "FixtureSetup",
    "Metric",
    "Rerun",
    "RunRecord",
    "Sample",
    "TestEntry",
    "escape_json",
    "escape_text",
    "unescape_text",
]

SCHEMA = "rtgov.run/1"
_TESTS_PLACE = object()  # where RunRecord.canonical_json puts the tests
# canonical_json's settings but for sort_keys: for dicts whose keys are in order
_SORTED_ENCODER = PRESORTED_ENCODER
OUTCOMES: tuple[str, ...] = ("passed", "failed", "skipped", "error")


def escape_text(text: str) -> str:
    """``text`` as valid Unicode, so that it can be written as UTF-8.

    Python keeps bytes that are not UTF-8 (of a file name, an argument, an environment
    variable) as lone surrogates, U+DC80 to U+DCFF, and pytest keeps a parametrize id
    as given when its id escaping is switched off; neither can be encoded. Each lone
    surrogate (U+D800 to U+DFFF) becomes the six characters ``\\udcXX``: Python's
    ``backslashreplace``, and the text pytest's default id escaping writes, so an id is
    recorded the same whether or not pytest escaped it. Any other text is returned as
    it is, at the cost of one ``isascii`` for ASCII text. :func:`unescape_text`
    reverses it.
    """
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def escape_json(value: Any) -> Any:
    """``value`` (builtin JSON data) with :func:`escape_text` applied to every string,
    keys included: for the small parts of a record made of free text (the verdict's
    notes may name a path)."""
    if isinstance(value, str):
        return escape_text(value)
    if isinstance(value, Mapping):
        return {escape_text(str(k)): escape_json(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [escape_json(v) for v in value]
    return value


_ESCAPED_SURROGATE = re.compile(r"\\u(d[89a-f][0-9a-f]{2})")


def unescape_text(text: str) -> str:
    """The text :func:`escape_text` was given: every ``\\udXXX`` (X hexadecimal, the
    surrogate range D800 to DFFF, lower case) back to its lone surrogate. Exact for
    any text that did not itself contain such six characters."""
    return _ESCAPED_SURROGATE.sub(lambda m: chr(int(m.group(1), 16)), text)


# The schema of a record file, as field annotations: msgspec checks them when a
# record is read (RunRecord.from_dict), never when the plugin builds one.
Count = Annotated[int, msgspec.Meta(ge=0)]
_FLOAT_MAX = sys.float_info.max
FiniteFloat = Annotated[
    float, msgspec.Meta(ge=-_FLOAT_MAX, le=_FLOAT_MAX, description="a finite number")
]
MetricValue = Annotated[
    FiniteFloat | str, msgspec.Meta(description="a finite number or a digest string")
]
OutcomeText = Annotated[str, one_of(*OUTCOMES)]


class Sample(msgspec.Struct, frozen=True, gc=False):
    """One measured region: a test call round or a fixture setup.

    ``peak_memory_bytes`` is the peak above the level at the region's start, in the
    session's memory mode (None when memory capture is off or unavailable).
    ``completed`` is False when the region raised: the partial measurement is kept.

    A frozen msgspec Struct: built once per test round on the hot path, where it
    costs a third of a NamedTuple (a frozen dataclass's ``__init__``, one
    ``object.__setattr__`` per field, costs five times a NamedTuple), and untracked
    by the garbage collector (``gc=False``: it holds no containers).
    """

    wall_ns: Count
    cpu_ns: Count
    peak_memory_bytes: Count | None = None
    gpu_time_ns: Count | None = None
    gpu_memory_bytes: Count | None = None
    warmup: bool = False
    completed: bool = True
    evidence: str | None = None
    variant: Annotated[str, one_of("current", "baseline")] = "current"
    block: Count = 0
    # The probe that measured peak_memory_bytes (a --rtgov-memory mode's name; null when
    # not measured, and in records older than the auto mode): see docs/memory.md.
    memory_probe: Annotated[str, one_of("tracemalloc", "memray", "rss")] | None = None
    # A/B rounds: the process's voluntary context switches during the round (it blocked:
    # I/O, sleep, a lock, a device), the evidence core.sequential.choose_clock reads;
    # null elsewhere, where getrusage is missing, and in older records.
    voluntary_switches: Count | None = None
    # Keys a record file must hold, though Python callers may leave them out
    # (core.schema.require_keys); msgspec takes other fields with defaults as optional.
    required_keys: ClassVar[tuple[str, ...]] = ("warmup", "completed")

    def to_dict(self) -> dict[str, Any]:
        # Keys in sorted order, as in every to_dict() a test's JSON is made of: see
        # RunRecord.canonical_json. ``memory_probe`` only when set: a record written
        # before it existed reads back to the same bytes.
        data = {
            "block": self.block,
            "completed": self.completed,
            "cpu_ns": self.cpu_ns,
            "evidence": self.evidence,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "gpu_time_ns": self.gpu_time_ns,
        }
        if self.memory_probe is not None:
            data["memory_probe"] = self.memory_probe
        data["peak_memory_bytes"] = self.peak_memory_bytes
        data["variant"] = self.variant
        if self.voluntary_switches is not None:
            data["voluntary_switches"] = self.voluntary_switches
        data["wall_ns"] = self.wall_ns
        data["warmup"] = self.warmup
        return data


@dataclass(frozen=True, slots=True)
class Metric:
    """A value a test or fixture recorded: a finite number, or a hex digest.

    ``higher_is_better`` is None for digests and for metrics with no direction.
    """

    name: str
    value: MetricValue
    unit: str = ""
    higher_is_better: bool | None = None
    required_keys: ClassVar[tuple[str, ...]] = ("unit",)

    def to_dict(self) -> dict[str, Any]:
        return {  # keys sorted (see Sample.to_dict)
            "higher_is_better": self.higher_is_better,
            "name": self.name,
            "unit": self.unit,
            "value": self.value,
        }


@dataclass(frozen=True, slots=True)
class Rerun:
    """An earlier attempt of a test that a rerun plugin ran again (pytest-rerunfailures'
    ``--reruns`` or ``@pytest.mark.flaky``): kept, never counted. Its test entry's
    samples, metrics and outcome are the final attempt's; gates judge those alone.

    ``outcome`` is what the attempt would have been alone (``failed``: its call
    failed; ``error``: its setup or teardown did). ``fixtures`` holds the setups of
    this attempt that the next attempt set up again (a fixture set up once for all
    attempts stays in the run's fixtures)."""

    outcome: OutcomeText
    samples: tuple[Sample, ...] = ()
    metrics: tuple[Metric, ...] = ()
    fixtures: tuple[FixtureEntry, ...] = ()
    required_keys: ClassVar[tuple[str, ...]] = ("samples", "metrics")

    def to_dict(self) -> dict[str, Any]:
        return {  # keys sorted (see Sample.to_dict)
            "fixtures": [f.to_dict() for f in self.fixtures],
            "metrics": [m.to_dict() for m in self.metrics],
            "outcome": self.outcome,
            "samples": [s.to_dict() for s in self.samples],
        }


@dataclass(frozen=True, slots=True)
class TestEntry:
    """Everything measured for one test: its call rounds, metrics and outcome (of its
    final attempt; earlier attempts a rerun plugin ran are its ``reruns``)."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: OutcomeText
    worker: str
    rounds: Annotated[int, msgspec.Meta(ge=1)] = 1
    warmup: Count = 0
    samples: tuple[Sample, ...] = ()
    metrics: tuple[Metric, ...] = ()
    markers: tuple[str, ...] = ()
    reruns: tuple[Rerun, ...] = ()
    checkpoints: tuple[ArrayCheckpoint, ...] = ()  # its checkpoints (core/array_checkpoints.py)
    seq: Count | None = None  # its start in its process's causal order (core/replay_order.py)
    required_keys: ClassVar[tuple[str, ...]] = ("rounds", "warmup", "samples", "metrics")

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {}  # keys sorted (see Sample.to_dict)
        if self.checkpoints:  # written only when there were any: records stay as they were
            data["checkpoints"] = [c.to_dict() for c in self.checkpoints]
        data |= {
            "markers": list(self.markers),
            "metrics": [m.to_dict() for m in self.metrics],
            "nodeid": self.nodeid,
            "outcome": self.outcome,
        }
        if self.reruns:  # written only when there were any: records stay as they were
            data["reruns"] = [r.to_dict() for r in self.reruns]
        data["rounds"] = self.rounds
        data["samples"] = [s.to_dict() for s in self.samples]
        if self.seq is not None:
            data["seq"] = self.seq
        data["warmup"] = self.warmup
        data["worker"] = self.worker
        return data


@dataclass(frozen=True, slots=True)
class FixtureSetup:
    """One execution of a fixture's setup, attributed to the worker that ran it."""

    worker: str
    requested_by: str
    outcome: Annotated[str, one_of("passed", "error")]
    sample: Sample
    metrics: tuple[Metric, ...] = ()
    # A @stage fixture's event (core/stages.py: stage, key, outcome, reason, outputs...);
    # absent for other fixtures, and then absent from the dict too.
    stage: Mapping[str, Any] | None = None
    # checkpoints captured during this setup, stage outputs included (absent when none)
    checkpoints: tuple[ArrayCheckpoint, ...] = ()
    required_keys: ClassVar[tuple[str, ...]] = ("metrics",)

    def to_dict(self) -> dict[str, Any]:
        data = {
            "worker": self.worker,
            "requested_by": self.requested_by,
            "outcome": self.outcome,
            "sample": self.sample.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
        }
        if self.stage is not None:
            data["stage"] = dict(self.stage)
        if self.checkpoints:
            data["checkpoints"] = [c.to_dict() for c in self.checkpoints]
        return data


@dataclass(frozen=True, slots=True)
class FixtureEntry:
    """A fixture at one scope node (``""`` for the session), with all its setups.

    Under xdist a session fixture is set up once per worker: one entry, one setup
    per worker, so entries are the same whatever the scheduling was.
    """

    nodeid: str
    name: str
    scope: Annotated[str, one_of("session", "package", "module", "class", "function")]
    param_index: Count | None = None
    setups: tuple[FixtureSetup, ...] = field(default=())
    required_keys: ClassVar[tuple[str, ...]] = ("setups",)

    @property
    def key(self) -> tuple[str, str, int]:
        return (self.nodeid, self.name, -1 if self.param_index is None else self.param_index)

    def to_dict(self) -> dict[str, Any]:
        return {
            "nodeid": self.nodeid,
            "name": self.name,
            "scope": self.scope,
            "param_index": self.param_index,
            "setups": [s.to_dict() for s in self.setups],
        }


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One pytest session with ``--rtgov`` or ``--rtgov-gate``, in canonical order."""

    run_id: str
    started_at: str
    ended_at: str
    mode: Annotated[str, one_of("record", "gate")]
    pytest_args: tuple[str, ...]
    memory_mode: str
    backend: str
    workers: tuple[str, ...]
    environment: Mapping[str, str]
    tests: tuple[TestEntry, ...]
    fixtures: tuple[FixtureEntry, ...]
    exit_status: Count = 0
    gate_results: tuple[Mapping[str, Any], ...] = ()
    verdict: Mapping[str, Any] = field(default_factory=dict)
    # {"kernel": description, "workers": {worker: median ns}} when calibrated
    calibration: Mapping[str, Any] = field(default_factory=dict)
    # A gated session's inputs by digest ({"gates": "sha256:..", "baseline": ..}): their
    # bytes are kept in the object store, so `rtgov audit` can re-derive the verdict.
    inputs: Mapping[str, str] = field(default_factory=dict)
    # --rtgov-schedule: plan digest, seed, policy, workers, observed sequences (schedule.md)
    schedule: Mapping[str, Any] = field(default_factory=dict)
    quarantine: Mapping[str, Any] = field(default_factory=dict)  # core/quarantine_record.py
    schema: Annotated[str, one_of(SCHEMA)] = SCHEMA
    required_keys: ClassVar[tuple[str, ...]] = ("schema", "exit_status")

    def to_dict(self) -> dict[str, Any]:
        data = self._to_dict_without_tests()
        data["tests"] = [t.to_dict() for t in self.tests]
        return data

    def canonical_json(self, *, chunk: int = 64) -> bytes:
        """``canonical_json(self.to_dict())``, the same bytes, made faster: tests are
        encoded ``chunk`` at a time (the dicts of all tests never exist at once, which
        kept the garbage collector busy on large runs), from dicts built with sorted
        keys (``to_dict``), so the encoder need not sort them: half the time."""
        data = self._to_dict_without_tests()
        data["tests"] = _TESTS_PLACE
        tests = self.tests
        encoded = b",".join(
            _SORTED_ENCODER.encode([t.to_dict() for t in tests[i : i + chunk]])[1:-1].encode()
            for i in range(0, len(tests), chunk)
        )
        # Canonical JSON of an object: its sorted keys' members joined by commas.
        return (
            b"{"
            + b",".join(
                canonical_json(key)
                + b":"
                + (b"[" + encoded + b"]" if value is _TESTS_PLACE else canonical_json(value))
                for key, value in sorted(data.items())
            )
            + b"}"
        )

    def _to_dict_without_tests(self) -> dict[str, Any]:
        data = {
            "schema": self.schema,
            "run_id": self.run_id,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "mode": self.mode,
            "exit_status": self.exit_status,
            "pytest_args": list(self.pytest_args),
            "memory_mode": self.memory_mode,
            "backend": self.backend,
            "workers": list(self.workers),
            "environment": dict(self.environment),
            "tests": None,  # filled in by the callers
            "fixtures": [f.to_dict() for f in self.fixtures],
            "gate_results": [dict(g) for g in self.gate_results],
            "verdict": dict(self.verdict),
            "calibration": dict(self.calibration),
        }
        for key in ("inputs", "schedule", "quarantine"):  # only when recorded: older
            if value := getattr(self, key):  # records keep their bytes
                data[key] = dict(value)
        return data

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<run record>") -> RunRecord:
        """Validate decoded JSON against the record schema (the annotations above);
        a RecordFormatError names ``source``, the JSON path and what was expected."""
        record = convert(data, cls, source=source, error=RecordFormatError)
        require_keys(data, cls, source=source, error=RecordFormatError)
        return record
