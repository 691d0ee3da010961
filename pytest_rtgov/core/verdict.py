"""The verdict: gate statuses, a gate's result, a session's verdict, and the one decision.

Pure: no disk, no pytest. Everything that shows or stores a verdict (the terminal,
``rtgov show``, the HTML report, the exports, the GitHub output, the delta index) reads
these types, so one run reads the same everywhere. Modelled on pytest's ``skipping.py``
(a pure evaluation, stored by a short hook) and transparency-dev/merkle's typed results.

Per gate and subject, a :class:`GateResult` has one of :data:`GATE_STATUSES`: ``pass``,
``breach``, ``missing`` (a metric the gate expects is gone: a breach, a gate should not
go silently blind), ``unconfirmed`` (A/B: breached, then passed re-measurement),
``new`` (no baseline value yet) and ``not-run`` (skipped or failed: not gated). The
failing ones are :data:`BREACHING`.

A session's :class:`Verdict` has one of :data:`SESSION_STATUSES`: ``passed``,
``breached``, ``failed-tests``, ``no-baseline``, ``error``, and :data:`UNGATED`
(``recorded``) for a run no gate judged. :func:`decide` makes it from the gate results,
the tests' exit status and what the baseline step will do.

>>> BREACHING
('breach', 'missing')
>>> decide([], tests_exit_status=0).status
'passed'
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Final

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY, ExitCode
from pytest_rtgov.core.quarantine_record import excused_gates
from pytest_rtgov.core.records import RunRecord, escape_json
from pytest_rtgov.errors import RecordFormatError

__all__ = [
    "BASELINE_STATES",
    "BREACHING",
    "EXIT_USAGE",
    "GATE_STATUSES",
    "SESSION_STATUSES",
    "UNGATED",
    "GateResult",
    "Verdict",
    "decide",
]

GATE_STATUSES: Final = ("pass", "breach", "missing", "unconfirmed", "new", "not-run")
# The gate statuses that fail a session: the one definition every reader uses.
BREACHING: Final = ("breach", "missing")
UNGATED: Final = "recorded"
SESSION_STATUSES: Final = ("passed", "breached", "failed-tests", "no-baseline", "error", UNGATED)
# What the baseline step after the decision will do, as :func:`decide` takes it:
#   present       a baseline to compare against; nothing written
#   update        --rtgov-update-baseline with passing tests: breaches accepted ("updated")
#   create        this run becomes the baseline of a new project/fingerprint ("created")
#   create-local  this machine's measurements go to the state directory ("created-local")
#   absent        none where one is required: ``no-baseline`` (exit 6)
#   untrusted     its seal fails, or one the ledger recorded is gone: ``error`` (exit 7)
#   unreadable    the baseline files do not parse: ``error`` (exit 4, a usage error)
BASELINE_STATES: Final = (
    "present",
    "update",
    "create",
    "create-local",
    "absent",
    "untrusted",
    "unreadable",
)
EXIT_USAGE: Final = int(ExitCode.BAD_INPUT)  # pytest.ExitCode.USAGE_ERROR
_ACTIONS: Final = {"update": "updated", "create": "created", "create-local": "created-local"}


def _finite(x: Any) -> Any:
    return None if isinstance(x, float) and not math.isfinite(x) else x


def _fail(source: str, place: str, expected: str) -> RecordFormatError:
    return RecordFormatError(source, place, expected)


def _optional(
    data: Mapping[str, Any], key: str, kinds: tuple[type, ...], source: str, place: str
) -> Any:
    value = data.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kinds)):
        names = " or ".join(k.__name__ for k in kinds)
        raise _fail(source, f"{place}.{key}", f"{names} or null (got {value!r})")
    return value


def _text(data: Mapping[str, Any], key: str, source: str, place: str, default: str = "") -> str:
    value = data.get(key, default)
    if not isinstance(value, str):
        raise _fail(source, f"{place}.{key}", f"a string (got {value!r})")
    return value


@dataclass(frozen=True, slots=True)
class GateResult:
    """One gate's judgement of one subject's metric (``docs/gates.md``, "Statuses")."""

    gate: str
    subject: str
    metric: str
    status: str  # one of GATE_STATUSES
    rule: str
    current: float | str | None = None
    baseline: float | str | None = None
    delta: float | None = None
    relative: float | None = None
    p_value: float | None = None
    reason: str = ""
    # The number the current value is compared against (see ``gate_threshold``);
    # None for exact and A/B gates. Records written before it existed lack the key.
    threshold: float | None = None
    # A/B gates: the clock that judged (wall_time, cpu_time or gpu_time); None for
    # other gates and in records written before it existed (the key is then absent).
    clock: str | None = None

    @property
    def breached(self) -> bool:
        return self.status in BREACHING

    def to_dict(self) -> dict[str, Any]:
        """The record's form: non-finite numbers as null, an infinite ``relative`` as
        ``"inf"`` or ``"-inf"`` (canonical JSON has no infinities)."""
        relative: float | str | None = self.relative
        if self.relative is not None and not math.isfinite(self.relative):
            infinite = "inf" if self.relative > 0 else "-inf"
            relative = None if math.isnan(self.relative) else infinite
        clock = {"clock": self.clock} if self.clock is not None else {}
        return {
            "gate": self.gate,
            "subject": self.subject,
            "metric": self.metric,
            "status": self.status,
            "rule": self.rule,
            "current": _finite(self.current),
            "baseline": _finite(self.baseline),
            "delta": _finite(self.delta),
            "relative": relative,
            "p_value": self.p_value,
            "reason": self.reason,
            "threshold": _finite(self.threshold),
            **clock,
        }

    @classmethod
    def from_dict(
        cls, data: Mapping[str, Any], *, source: str = "gate result", place: str = "$"
    ) -> GateResult:
        """The inverse of :meth:`to_dict`; records from before ``threshold`` lack it."""
        if not isinstance(data, Mapping):
            raise _fail(source, place, f"an object (got {type(data).__name__})")
        status = _text(data, "status", source, place)
        if status not in GATE_STATUSES:
            raise _fail(source, f"{place}.status", f"one of {', '.join(GATE_STATUSES)}")
        relative = data.get("relative")
        if relative in ("inf", "-inf"):
            relative = math.inf if relative == "inf" else -math.inf
        else:
            relative = _optional(data, "relative", (int, float), source, place)
        return cls(
            gate=_text(data, "gate", source, place),
            subject=_text(data, "subject", source, place),
            metric=_text(data, "metric", source, place),
            status=status,
            rule=_text(data, "rule", source, place),
            current=_optional(data, "current", (int, float, str), source, place),
            baseline=_optional(data, "baseline", (int, float, str), source, place),
            delta=_optional(data, "delta", (int, float), source, place),
            relative=relative,
            p_value=_optional(data, "p_value", (int, float), source, place),
            reason=_text(data, "reason", source, place),
            threshold=_optional(data, "threshold", (int, float), source, place),
            clock=_optional(data, "clock", (str,), source, place),
        )


@dataclass(frozen=True, slots=True)
class Verdict:
    """A session's (or a merged run's) verdict: status, exit status, results, notes.

    ``to_dict`` is the run record's ``verdict`` key; the results themselves go to the
    record's ``gate_results`` (``from_dict`` takes them back from there).
    """

    status: str  # one of SESSION_STATUSES
    exit_status: int
    results: tuple[GateResult, ...] = ()
    notes: tuple[str, ...] = ()
    baseline_action: str | None = None  # updated | created | created-local | None
    # An update session (``updated``): how many breaches the update accepted
    # (core/acceptance.py); None otherwise, and the key is then absent from the record.
    accepted: int | None = None
    # (gate, subject) pairs a valid quarantine entry excuses (core/quarantine_record.py):
    # their breaches keep their status but are not counted; "quarantined" in the record.
    quarantined: tuple[tuple[str, str], ...] = ()

    @property
    def breaches(self) -> list[GateResult]:
        """The breaches that count: a quarantined one is excused."""
        excused = self.quarantined
        return [r for r in self.results if r.breached and (r.gate, r.subject) not in excused]

    @property
    def quarantined_breaches(self) -> list[GateResult]:
        """The breaches a valid quarantine entry excuses (still measured and shown)."""
        excused = self.quarantined
        return [r for r in self.results if r.breached and (r.gate, r.subject) in excused]

    def count(self, status: str) -> int:
        """How many results have this gate status (``unconfirmed``, ``new``...)."""
        return sum(1 for r in self.results if r.status == status)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "exit_status": self.exit_status,
            "breaches": len(self.breaches),
            "unconfirmed": self.count("unconfirmed"),
            "gates_evaluated": len(self.results),
            "notes": list(self.notes),
            "baseline_action": self.baseline_action,
            **({"accepted": self.accepted} if self.accepted is not None else {}),
            **({"quarantined": n} if (n := len(self.quarantined_breaches)) else {}),
        }

    def gate_results(self) -> tuple[dict[str, Any], ...]:
        """The record's ``gate_results``."""
        return tuple(r.to_dict() for r in self.results)

    @classmethod
    def from_dict(
        cls,
        data: Mapping[str, Any],
        results: Iterable[Mapping[str, Any] | GateResult] = (),
        *,
        source: str = "run record",
        quarantined: Iterable[tuple[str, str]] = (),
    ) -> Verdict:
        """The inverse of :meth:`to_dict` with :meth:`gate_results`; the counts in
        ``data`` are derived from the results, never trusted (``quarantined``: the
        (gate, subject) pairs the record's quarantine section excuses)."""
        if not isinstance(data, Mapping):
            raise _fail(source, "$.verdict", f"an object (got {type(data).__name__})")
        status = _text(data, "status", source, "$.verdict")
        if status not in SESSION_STATUSES:
            raise _fail(source, "$.verdict.status", f"one of {', '.join(SESSION_STATUSES)}")
        code = data.get("exit_status")
        if isinstance(code, bool) or not isinstance(code, int):
            raise _fail(source, "$.verdict.exit_status", f"an integer (got {code!r})")
        notes = data.get("notes", [])
        if not isinstance(notes, list) or not all(isinstance(n, str) for n in notes):
            raise _fail(source, "$.verdict.notes", "a list of strings")
        action = _optional(data, "baseline_action", (str,), source, "$.verdict")
        accepted = _optional(data, "accepted", (int,), source, "$.verdict")
        typed = tuple(
            r
            if isinstance(r, GateResult)
            else GateResult.from_dict(r, source=source, place=f"$.gate_results[{i}]")
            for i, r in enumerate(results)
        )
        excused = tuple(sorted(set(quarantined)))
        return cls(status, code, typed, tuple(notes), action, accepted, excused)

    @classmethod
    def of_record(cls, record: RunRecord) -> Verdict:
        """The typed verdict of a run record; a record with no verdict (``pytest
        --rtgov``, or written before verdicts) is ungated: ``recorded``."""
        source = f"run {record.run_id}"
        if not record.verdict:
            results = tuple(
                GateResult.from_dict(r, source=source, place=f"$.gate_results[{i}]")
                for i, r in enumerate(record.gate_results)
            )
            return cls(UNGATED, int(record.exit_status), results)
        excused = excused_gates(record.quarantine)
        return cls.from_dict(
            record.verdict, record.gate_results, source=source, quarantined=excused
        )

    def with_notes(self, *notes: str) -> Verdict:
        return replace(self, notes=(*self.notes, *notes))

    def with_ledger_failure(self, reason: str) -> Verdict:
        """The verdict when the ledger cannot be appended to: ``error``, exit 7
        (``EXIT_INTEGRITY``), whatever the gates said; the reason becomes a note."""
        return replace(
            self, status="error", exit_status=int(EXIT_INTEGRITY), notes=(*self.notes, reason)
        )

    def stamp(self, record: RunRecord) -> RunRecord:
        """``record`` saying this verdict: its exit status, ``gate_results`` and
        ``verdict``. The notes name paths, which need not be UTF-8: escaped as the rest
        of the record is (the results come from gates.toml and the escaped subjects)."""
        return replace(
            record,
            exit_status=self.exit_status,
            gate_results=self.gate_results(),
            verdict=escape_json(self.to_dict()),
        )


def decide(
    results: Sequence[GateResult],
    *,
    tests_exit_status: int,
    baseline: str = "present",
    notes: Sequence[str] = (),
    quarantined: Collection[tuple[str, str]] = (),
) -> Verdict:
    """The one decision, for a session (``plugin/gating.py``), ``rtgov merge`` and
    ``rtgov audit`` alike.

    In order: a baseline that cannot be trusted is ``error`` (7), one that does not
    parse ``error`` (4); failed tests are ``failed-tests`` with pytest's status; a
    breach (``breach`` or ``missing``) is ``breached`` (6) unless the baseline is being
    updated (the breaches are accepted; the update step then keeps breached what it
    cannot accept, :func:`pytest_rtgov.core.acceptance.settle`); a baseline that is
    required but absent is ``no-baseline`` (6); else ``passed`` (0). ``baseline`` is
    one of :data:`BASELINE_STATES`; the baseline action it implies is kept on the
    verdict only for a session that passes (``settle`` keeps ``updated`` on it).
    ``quarantined``: (gate, subject) pairs a valid quarantine entry excuses; their
    breaches are kept in the results but do not count (:attr:`Verdict.breaches`).

    >>> breach = GateResult("g", "t", "wall_time", "breach", "max 1 s")
    >>> decide([breach], tests_exit_status=0).exit_status
    6
    >>> decide([breach], tests_exit_status=0, baseline="update").status
    'passed'
    >>> decide([breach], tests_exit_status=1).status
    'failed-tests'
    >>> decide([breach], tests_exit_status=0, quarantined=[("g", "t")]).status
    'passed'
    """
    if baseline not in BASELINE_STATES:
        raise ValueError(f"baseline state {baseline!r}, expected one of {BASELINE_STATES}")
    typed = tuple(results)
    kept = tuple(notes)
    excused = tuple(sorted(set(quarantined)))
    if baseline == "untrusted":
        return Verdict("error", int(EXIT_INTEGRITY), typed, kept, quarantined=excused)
    if baseline == "unreadable":
        return Verdict("error", EXIT_USAGE, typed, kept, quarantined=excused)
    if tests_exit_status != 0:
        return Verdict("failed-tests", int(tests_exit_status), typed, kept, quarantined=excused)
    counted = Verdict("breached", int(EXIT_GATE_BREACHED), typed, kept, quarantined=excused)
    if baseline != "update" and counted.breaches:
        return counted
    if baseline == "absent":
        return replace(counted, status="no-baseline")
    return Verdict("passed", 0, typed, kept, _ACTIONS.get(baseline), quarantined=excused)
