"""Run records: what one pytest session measured, as frozen values.

Every record class has ``to_dict()`` returning builtin types only (records cross
xdist's wire and are written as JSON) and a ``from_dict()`` that validates, names
the place of the first problem, and never mutates its input.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple

from pytest_rtgov.core.canonical import PRESORTED_ENCODER, canonical_json
from pytest_rtgov.errors import RecordFormatError

__all__ = [
    "SCHEMA",
    "FixtureEntry",
    "FixtureSetup",
    "Metric",
    "RunRecord",
    "Sample",
    "TestEntry",
    "canonical_run",
    "escape_json",
    "escape_text",
    "unescape_text",
]

SCHEMA = "rtgov.run/1"
_TESTS_PLACE = object()  # where RunRecord.canonical_json puts the tests
# canonical_json's settings but for sort_keys: for dicts whose keys are in order
_SORTED_ENCODER = PRESORTED_ENCODER
Outcome = Literal["passed", "failed", "skipped", "error"]
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


class _Reader:
    """Typed access to a decoded JSON object that reports the JSON path on error."""

    __slots__ = ("data", "place", "source")

    def __init__(self, data: Any, source: str, place: str) -> None:
        if not isinstance(data, Mapping):
            raise RecordFormatError(source, place, f"an object (got {type(data).__name__})")
        self.data, self.source, self.place = data, source, place

    def _fail(self, key: str, expected: str) -> RecordFormatError:
        got = self.data.get(key, "<missing>")
        return RecordFormatError(self.source, f"{self.place}.{key}", f"{expected} (got {got!r})")

    def str(self, key: str) -> str:
        value = self.data.get(key)
        if not isinstance(value, str):
            raise self._fail(key, "a string")
        return value

    def int(self, key: str, *, optional: bool = False, minimum: int = 0) -> Any:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise self._fail(key, f"an integer >= {minimum}" + (" or null" if optional else ""))
        return value

    def bool(self, key: str, *, optional: bool = False) -> Any:
        value = self.data.get(key)
        if value is None and optional:
            return None
        if not isinstance(value, bool):
            raise self._fail(key, "true or false" + (" or null" if optional else ""))
        return value

    def optional_str(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is not None and not isinstance(value, str):
            raise self._fail(key, "a string or null")
        return value

    def choice(self, key: str, choices: Iterable[str]) -> str:
        value = self.data.get(key)
        if value not in tuple(choices):
            raise self._fail(key, f"one of {', '.join(repr(c) for c in choices)}")
        return str(value)

    def list(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise self._fail(key, "a list")
        return value

    def str_list(self, key: str) -> list[str]:
        value = self.list(key)
        if not all(isinstance(v, str) for v in value):
            raise self._fail(key, "a list of strings")
        return value

    def str_map(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if not isinstance(value, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in value.items()
        ):
            raise self._fail(key, "an object of strings")
        return dict(value)

    def child(self, key: str) -> _Reader:
        return _Reader(self.data.get(key), self.source, f"{self.place}.{key}")

    def items(self, key: str) -> list[_Reader]:
        return [
            _Reader(item, self.source, f"{self.place}.{key}[{i}]")
            for i, item in enumerate(self.list(key))
        ]


class Sample(NamedTuple):
    """One measured region: a test call round or a fixture setup.

    ``peak_memory_bytes`` is the peak above the level at the region's start, in the
    session's memory mode (None when memory capture is off or unavailable).
    ``completed`` is False when the region raised: the partial measurement is kept.

    A NamedTuple rather than a frozen dataclass: equally immutable, and built once
    per test round on the hot path, where a frozen dataclass's ``__init__`` (one
    ``object.__setattr__`` per field) costs five times as much.
    """

    wall_ns: int
    cpu_ns: int
    peak_memory_bytes: int | None = None
    gpu_time_ns: int | None = None
    gpu_memory_bytes: int | None = None
    warmup: bool = False
    completed: bool = True
    evidence: str | None = None
    variant: str = "current"
    block: int = 0

    def to_dict(self) -> dict[str, Any]:
        # Keys in sorted order, as in every to_dict() a test's JSON is made of: see
        # RunRecord.canonical_json.
        return {
            "block": self.block,
            "completed": self.completed,
            "cpu_ns": self.cpu_ns,
            "evidence": self.evidence,
            "gpu_memory_bytes": self.gpu_memory_bytes,
            "gpu_time_ns": self.gpu_time_ns,
            "peak_memory_bytes": self.peak_memory_bytes,
            "variant": self.variant,
            "wall_ns": self.wall_ns,
            "warmup": self.warmup,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<sample>", place: str = "$") -> Sample:
        r = _Reader(data, source, place)
        return cls(
            wall_ns=r.int("wall_ns"),
            cpu_ns=r.int("cpu_ns"),
            peak_memory_bytes=r.int("peak_memory_bytes", optional=True),
            gpu_time_ns=r.int("gpu_time_ns", optional=True),
            gpu_memory_bytes=r.int("gpu_memory_bytes", optional=True),
            warmup=r.bool("warmup"),
            completed=r.bool("completed"),
            evidence=r.optional_str("evidence"),
            variant=r.choice("variant", ("current", "baseline"))
            if "variant" in r.data
            else "current",
            block=r.int("block") if "block" in r.data else 0,
        )


@dataclass(frozen=True, slots=True)
class Metric:
    """A value a test or fixture recorded: a finite number, or a hex digest.

    ``higher_is_better`` is None for digests and for metrics with no direction.
    """

    name: str
    value: float | str
    unit: str = ""
    higher_is_better: bool | None = None

    @property
    def is_digest(self) -> bool:
        return isinstance(self.value, str)

    def to_dict(self) -> dict[str, Any]:
        return {  # keys sorted (see Sample.to_dict)
            "higher_is_better": self.higher_is_better,
            "name": self.name,
            "unit": self.unit,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<metric>", place: str = "$") -> Metric:
        r = _Reader(data, source, place)
        value = r.data.get("value")
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise r._fail("value", "a finite number or a digest string")
        if isinstance(value, (int, float)) and not math.isfinite(value):
            raise r._fail("value", "a finite number")
        return cls(
            name=r.str("name"),
            value=float(value) if isinstance(value, int) else value,
            unit=r.str("unit"),
            higher_is_better=r.bool("higher_is_better", optional=True),
        )


def _sorted_metrics(metrics: Iterable[Metric]) -> tuple[Metric, ...]:
    # Stable sort: two records of one name keep the order they were made in.
    return tuple(sorted(metrics, key=lambda m: m.name))


@dataclass(frozen=True, slots=True)
class TestEntry:
    """Everything measured for one test: its call rounds, metrics and outcome."""

    __test__ = False  # not a pytest test class

    nodeid: str
    outcome: str
    worker: str
    rounds: int = 1
    warmup: int = 0
    samples: tuple[Sample, ...] = ()
    metrics: tuple[Metric, ...] = ()
    markers: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {  # keys sorted (see Sample.to_dict)
            "markers": list(self.markers),
            "metrics": [m.to_dict() for m in self.metrics],
            "nodeid": self.nodeid,
            "outcome": self.outcome,
            "rounds": self.rounds,
            "samples": [s.to_dict() for s in self.samples],
            "warmup": self.warmup,
            "worker": self.worker,
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<test>", place: str = "$") -> TestEntry:
        r = _Reader(data, source, place)
        return cls(
            nodeid=r.str("nodeid"),
            outcome=r.choice("outcome", OUTCOMES),
            worker=r.str("worker"),
            rounds=r.int("rounds", minimum=1),
            warmup=r.int("warmup"),
            samples=tuple(
                Sample.from_dict(s.data, source=source, place=s.place) for s in r.items("samples")
            ),
            metrics=tuple(
                Metric.from_dict(m.data, source=source, place=m.place) for m in r.items("metrics")
            ),
            markers=tuple(r.str_list("markers")) if "markers" in r.data else (),
        )


@dataclass(frozen=True, slots=True)
class FixtureSetup:
    """One execution of a fixture's setup, attributed to the worker that ran it."""

    worker: str
    requested_by: str
    outcome: str
    sample: Sample
    metrics: tuple[Metric, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "requested_by": self.requested_by,
            "outcome": self.outcome,
            "sample": self.sample.to_dict(),
            "metrics": [m.to_dict() for m in self.metrics],
        }

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<setup>", place: str = "$") -> FixtureSetup:
        r = _Reader(data, source, place)
        return cls(
            worker=r.str("worker"),
            requested_by=r.str("requested_by"),
            outcome=r.choice("outcome", ("passed", "error")),
            sample=Sample.from_dict(r.data.get("sample"), source=source, place=f"{place}.sample"),
            metrics=tuple(
                Metric.from_dict(m.data, source=source, place=m.place) for m in r.items("metrics")
            ),
        )


@dataclass(frozen=True, slots=True)
class FixtureEntry:
    """A fixture at one scope node (``""`` for the session), with all its setups.

    Under xdist a session fixture is set up once per worker: one entry, one setup
    per worker, so entries are the same whatever the scheduling was.
    """

    nodeid: str
    name: str
    scope: str
    param_index: int | None = None
    setups: tuple[FixtureSetup, ...] = field(default=())

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

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<fixture>", place: str = "$") -> FixtureEntry:
        r = _Reader(data, source, place)
        return cls(
            nodeid=r.str("nodeid"),
            name=r.str("name"),
            scope=r.choice("scope", ("session", "package", "module", "class", "function")),
            param_index=r.int("param_index", optional=True),
            setups=tuple(
                FixtureSetup.from_dict(s.data, source=source, place=s.place)
                for s in r.items("setups")
            ),
        )


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One pytest session with ``--rtgov`` or ``--rtgov-gate``, in canonical order."""

    run_id: str
    started_at: str
    ended_at: str
    mode: str
    pytest_args: tuple[str, ...]
    memory_mode: str
    backend: str
    workers: tuple[str, ...]
    environment: Mapping[str, str]
    tests: tuple[TestEntry, ...]
    fixtures: tuple[FixtureEntry, ...]
    exit_status: int = 0
    gate_results: tuple[Mapping[str, Any], ...] = ()
    verdict: Mapping[str, Any] = field(default_factory=dict)
    # {"kernel": description, "workers": {worker: median ns}} when calibrated
    calibration: Mapping[str, Any] = field(default_factory=dict)
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        data = self._to_dict_without_tests()
        data["tests"] = [t.to_dict() for t in self.tests]
        return data

    def canonical_json(self, *, chunk: int = 64) -> bytes:
        """``canonical_json(self.to_dict())``, the same bytes, made faster.

        The tests are encoded ``chunk`` at a time, so the dicts of all tests never
        exist at once: on a large run that keeps tens of thousands of containers
        from pushing the garbage collector through pytest's whole heap. And their
        dicts are built with sorted keys (``TestEntry``, ``Sample`` and ``Metric``
        ``to_dict``), so the encoder need not sort them: half the encoding time.
        """
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
        return {
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

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<run record>") -> RunRecord:
        r = _Reader(data, source, "$")
        schema = r.str("schema")
        if schema != SCHEMA:
            raise RecordFormatError(source, "$.schema", f"{SCHEMA!r} (got {schema!r})")
        args = r.list("pytest_args")
        if not all(isinstance(a, str) for a in args):
            raise RecordFormatError(source, "$.pytest_args", "a list of strings")
        workers = r.list("workers")
        if not all(isinstance(w, str) for w in workers):
            raise RecordFormatError(source, "$.workers", "a list of strings")
        return cls(
            run_id=r.str("run_id"),
            started_at=r.str("started_at"),
            ended_at=r.str("ended_at"),
            mode=r.choice("mode", ("record", "gate")),
            exit_status=r.int("exit_status"),
            pytest_args=tuple(args),
            memory_mode=r.str("memory_mode"),
            backend=r.str("backend"),
            workers=tuple(workers),
            environment=r.str_map("environment"),
            tests=tuple(
                TestEntry.from_dict(t.data, source=source, place=t.place) for t in r.items("tests")
            ),
            fixtures=tuple(
                FixtureEntry.from_dict(f.data, source=source, place=f.place)
                for f in r.items("fixtures")
            ),
            gate_results=tuple(
                dict(g.data) for g in (r.items("gate_results") if "gate_results" in r.data else [])
            ),
            verdict=dict(r.child("verdict").data) if "verdict" in r.data else {},
            calibration=dict(r.child("calibration").data) if "calibration" in r.data else {},
        )


def _canonical_test(test: TestEntry) -> TestEntry:
    if not test.metrics and not test.markers:
        return test  # the usual case, checked before any sorting
    metrics = _sorted_metrics(test.metrics)
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
            metrics=_sorted_metrics(setup.metrics),
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
