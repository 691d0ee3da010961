"""Quarantine proposals from evidence: per test and per gate, a flakiness estimate over the
last runs of the history, and what ``rtgov quarantine propose`` proposes (or refuses) from it.

Pure: a history of runs in (oldest first, :class:`RunFacts`), proposals out. A subject is
*bad* in a run when it failed there (a test's final outcome ``failed`` or ``error``, a
gate's ``breach``) or needed a second chance (a test that passed after a rerun, an A/B
gate result that breached and then failed confirmation: ``unconfirmed``); *clean* when it
passed at once; a skipped test or a gate result ``missing``, ``new`` or ``not-run`` is no
observation. The failure rate is the posterior of a Beta(1, 1) prior given the bad and
clean runs of the window: its mean and its 90% credible interval.

A subject is proposed when it is *intermittent* (bad and clean runs alternate: at least
two transitions, or one second chance) and the interval's lower end reaches ``min_rate``.
Never proposed, with the reason said: *broken* (it fails every run since some run, or
every run of the window), *new* (first observed in the newest ``new_runs`` runs: the base
history before them never ran it), *environment* (every bad run differs from every clean
run in one fingerprint field: the field is named), already quarantined. A quarantined
subject clean in ``clean_runs`` consecutive runs (its newest observations) is proposed
for removal.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_rtgov.core.fingerprint import FINGERPRINT_KEYS
from pytest_rtgov.core.quarantine import Quarantine

__all__ = [
    "CLEAN",
    "DEFAULTS",
    "FAIL",
    "RETRY",
    "Estimate",
    "Exclusion",
    "Options",
    "Proposal",
    "Proposals",
    "RunFacts",
    "beta_interval",
    "estimate",
    "propose",
    "run_facts",
]

CLEAN, FAIL, RETRY = "clean", "fail", "retry"  # an observation of a subject in one run
_RANK = {CLEAN: 0, RETRY: 1, FAIL: 2}
_GATE = {"pass": CLEAN, "breach": FAIL, "unconfirmed": RETRY}  # other statuses: not observed
CREDIBLE = 0.90


@dataclass(frozen=True, slots=True)
class RunFacts:
    """What one run says about each subject. ``tests``: node id -> observation;
    ``gates``: (gate, subject) -> observation (the worst of its metrics); ``digest``: the
    record's ``sha256:`` (its verdict leaf's), which entries cite as evidence."""

    run_id: str
    digest: str = ""
    environment: Mapping[str, str] = field(default_factory=dict)
    tests: Mapping[str, str] = field(default_factory=dict)
    gates: Mapping[tuple[str, str], str] = field(default_factory=dict)

    def observations(self) -> dict[str, str]:
        """Subject -> observation: node ids, and ``gate:NAME:SUBJECT`` for gate results."""
        seen = dict(self.tests)
        seen |= {f"gate:{gate}:{subject}": obs for (gate, subject), obs in self.gates.items()}
        return seen


def run_facts(record: Any, digest: str = "") -> RunFacts:
    """The facts of a run record (:class:`~pytest_rtgov.core.records.RunRecord`)."""
    tests: dict[str, str] = {}
    for test in record.tests:
        if test.outcome in ("failed", "error"):
            tests[test.nodeid] = FAIL
        elif test.outcome == "passed":
            retried = any(r.outcome in ("failed", "error") for r in test.reruns)
            tests[test.nodeid] = RETRY if retried else CLEAN
    gates: dict[tuple[str, str], str] = {}
    for result in record.gate_results:
        obs = _GATE.get(str(result.get("status")))
        key = (str(result.get("gate")), str(result.get("subject")))
        if obs is not None and _RANK[obs] >= _RANK[gates.get(key, CLEAN)]:
            gates[key] = obs
    environment = {k: str(record.environment.get(k, "")) for k in FINGERPRINT_KEYS}
    return RunFacts(record.run_id, digest, environment, tests, gates)


def beta_interval(alpha: int, beta: int, mass: float = CREDIBLE) -> tuple[float, float]:
    """The central ``mass`` credible interval of Beta(alpha, beta), integer parameters:
    its CDF is a binomial tail, I_x(a, b) = P(Binomial(a + b - 1, x) >= a), inverted by
    bisection (as ``scipy.stats.beta.ppf`` gives it, to 1e-12; tested against it)."""
    tail = (1.0 - mass) / 2
    return _beta_ppf(alpha, beta, tail), _beta_ppf(alpha, beta, 1.0 - tail)


def _beta_cdf(x: float, a: int, b: int) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    n = a + b - 1
    log_x, log_y = math.log(x), math.log1p(-x)
    total = 0.0
    for j in range(a, n + 1):
        log_term = math.lgamma(n + 1) - math.lgamma(j + 1) - math.lgamma(n - j + 1)
        total += math.exp(log_term + j * log_x + (n - j) * log_y)
    return min(total, 1.0)


def _beta_ppf(a: int, b: int, q: float) -> float:
    low, high = 0.0, 1.0
    while high - low > 1e-12:
        mid = (low + high) / 2
        if _beta_cdf(mid, a, b) < q:
            low = mid
        else:
            high = mid
    return (low + high) / 2


@dataclass(frozen=True, slots=True)
class Estimate:
    """A subject's flakiness over the window: ``runs`` observed, ``failures`` (final
    failures or breaches), ``retries`` (passes after a rerun, unconfirmed breaches),
    ``transitions`` (bad -> clean and clean -> bad), the posterior mean failure rate and
    its 90% interval, and the ids and digests of the bad runs."""

    subject: str
    runs: int
    failures: int
    retries: int
    transitions: int
    mean: float
    low: float
    high: float
    bad_runs: tuple[str, ...] = ()
    evidence: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "gate" if self.subject.startswith("gate:") else "test"

    @property
    def bad(self) -> int:
        return self.failures + self.retries

    def to_dict(self) -> dict[str, Any]:
        return {
            "subject": self.subject, "kind": self.kind, "runs": self.runs,
            "failures": self.failures, "retries": self.retries,
            "transitions": self.transitions, "mean": round(self.mean, 6),
            "interval": [round(self.low, 6), round(self.high, 6)],
            "bad_runs": list(self.bad_runs), "evidence": list(self.evidence),
        }


def estimate(subject: str, seen: Sequence[tuple[RunFacts, str]]) -> Estimate:
    """The estimate of one subject from its observations, oldest first."""
    states = [obs for _, obs in seen]
    bad = [(run, obs) for run, obs in seen if obs != CLEAN]
    failures = sum(1 for _, obs in bad if obs == FAIL)
    flips = sum(1 for a, b in itertools.pairwise(states) if (a == CLEAN) != (b == CLEAN))
    alpha, beta = 1 + len(bad), 1 + len(states) - len(bad)
    low, high = beta_interval(alpha, beta)
    return Estimate(
        subject, len(states), failures, len(bad) - failures, flips, alpha / (alpha + beta),
        low, high, tuple(run.run_id for run, _ in bad),
        tuple(sorted({run.digest for run, _ in bad if run.digest})),
    )


@dataclass(frozen=True, slots=True)
class Options:
    """``window``: runs estimated over; ``clean_runs``: consecutive clean runs before a
    removal; ``new_runs``: a subject first observed in the newest so many runs is new;
    ``min_runs``: fewer observations decide nothing; ``min_rate``: the lowest interval
    lower end proposed."""

    window: int = 30
    clean_runs: int = 20
    new_runs: int = 3
    min_runs: int = 5
    min_rate: float = 0.02


DEFAULTS = Options()


@dataclass(frozen=True, slots=True)
class Proposal:
    """``add``: quarantine ``subject``; ``remove``: end ``entry`` (its id), clean in
    ``clean_runs`` consecutive runs."""

    action: str
    subject: str
    estimate: Estimate
    entry: str = ""
    clean_runs: int = 0

    def to_dict(self) -> dict[str, Any]:
        data = {"action": self.action, "subject": self.subject, **self.estimate.to_dict()}
        if self.action == "remove":
            data |= {"entry": self.entry, "clean_runs": self.clean_runs}
        return data


@dataclass(frozen=True, slots=True)
class Exclusion:
    """A subject with bad runs that is not proposed: ``reason`` one of broken, new,
    environment, quarantined, fixed, rare, too-few-runs; ``detail`` says why in words
    (``field``: the fingerprint field of an environment exclusion)."""

    subject: str
    reason: str
    detail: str
    estimate: Estimate
    field: str = ""

    def to_dict(self) -> dict[str, Any]:
        data = {"reason": self.reason, "detail": self.detail, **self.estimate.to_dict()}
        return data | ({"field": self.field} if self.field else {})


@dataclass(frozen=True, slots=True)
class Proposals:
    """Everything ``propose`` found, each list sorted by subject."""

    runs: tuple[str, ...]
    adds: tuple[Proposal, ...] = ()
    removals: tuple[Proposal, ...] = ()
    excluded: tuple[Exclusion, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "runs": list(self.runs),
            "add": [p.to_dict() for p in self.adds],
            "remove": [p.to_dict() for p in self.removals],
            "excluded": [e.to_dict() for e in self.excluded],
        }


def _environment_field(seen: Sequence[tuple[RunFacts, str]]) -> tuple[str, str]:
    """The first fingerprint field whose values in bad runs never occur in clean runs,
    and the sentence naming them; ``("", "")`` when none separates them."""
    for key in FINGERPRINT_KEYS:
        bad = {run.environment.get(key, "") for run, obs in seen if obs != CLEAN}
        clean = {run.environment.get(key, "") for run, obs in seen if obs == CLEAN}
        if clean and bad and not bad & clean:
            return key, (
                f"fails only where {key} is {_values(bad)}; passes where it is {_values(clean)}"
            )
    return "", ""


def _values(values: Iterable[str]) -> str:
    return " or ".join(repr(v) for v in sorted(values))


def _judge(
    subject: str, seen: Sequence[tuple[RunFacts, str]], first: int, newest: int,
    options: Options, quarantined: str,
) -> Proposal | Exclusion | None:
    if all(obs == CLEAN for _, obs in seen):  # nothing to judge: no interval to compute
        return None
    est = estimate(subject, seen)
    if quarantined:
        return Exclusion(subject, "quarantined", f"already quarantined ({quarantined})", est)
    if first > newest - options.new_runs:
        return Exclusion(
            subject, "new",
            f"new: first ran in run {seen[0][0].run_id}, one of the newest {options.new_runs} "
            "runs (the history before them never ran it)", est,
        )
    if est.runs < options.min_runs:
        return Exclusion(
            subject, "too-few-runs", f"observed in {est.runs} runs, fewer than {options.min_runs}",
            est,
        )
    key, why = _environment_field(seen)
    if key:
        return Exclusion(subject, "environment", f"environment: {why}", est, key)
    states = [obs for _, obs in seen]
    trailing = next((i for i, s in enumerate(reversed(states)) if s != FAIL), len(states))
    start = len(states) - trailing
    if trailing and all(s == CLEAN for s in states[:start]):
        where = (
            "every run of the window" if start == 0
            else f"every run since {seen[start][0].run_id}; passed before"
        )
        return Exclusion(subject, "broken", f"broken: fails {where}", est)
    if est.transitions < 2 and not est.retries:  # failed, then passes every run since
        since = next(run.run_id for run, obs in seen if obs == CLEAN)
        return Exclusion(subject, "fixed", f"fixed: passes every run since {since}", est)
    if est.low < options.min_rate:
        return Exclusion(
            subject, "rare",
            f"{est.bad} bad in {est.runs} runs: the interval's lower end {est.low:.3f} is "
            f"under {options.min_rate}", est,
        )
    return Proposal("add", subject, est)


def _timeline(history: Sequence[RunFacts]) -> dict[str, list[tuple[int, RunFacts, str]]]:
    lines: dict[str, list[tuple[int, RunFacts, str]]] = {}
    for index, run in enumerate(history):
        for subject, obs in run.observations().items():
            lines.setdefault(subject, []).append((index, run, obs))
    return lines


def _quarantined(quarantine: Quarantine, subject: str) -> str:
    if subject.startswith("gate:"):
        gate, _, name = subject[5:].partition(":")
        checked = quarantine.for_gate(gate, name)
    else:
        checked = quarantine.for_test(subject)
    return "" if checked is None else f"entry {checked.id}, {checked.state}"


def _removals(
    history: Sequence[RunFacts], lines: Mapping[str, list[tuple[int, RunFacts, str]]],
    quarantine: Quarantine, options: Options,
) -> list[Proposal]:
    proposals = []
    for checked in quarantine.entries:
        entry = checked.entry
        per_run: dict[int, list[str]] = {}
        for subject, line in lines.items():
            if subject.startswith("gate:"):
                gate, _, name = subject[5:].partition(":")
                if not entry.matches_gate(gate, name):
                    continue
            elif not entry.matches_test(subject):
                continue
            for index, _, obs in line:
                per_run.setdefault(index, []).append(obs)
        streak = 0
        for index in sorted(per_run, reverse=True):
            if any(obs != CLEAN for obs in per_run[index]):
                break
            streak += 1
        if streak >= options.clean_runs:
            seen = [(history[i], CLEAN) for i in sorted(per_run)[-streak:]]
            est = estimate(entry.subject, seen)
            proposals.append(Proposal("remove", entry.subject, est, checked.id, streak))
    return proposals


def propose(
    history: Sequence[RunFacts], quarantine: Quarantine | None = None,
    options: Options = DEFAULTS,
) -> Proposals:
    """Proposals over ``history`` (oldest first): additions judged on the newest
    ``options.window`` runs (newness on the whole history), removals of ``quarantine``'s
    entries on their consecutive clean runs."""
    quarantine = quarantine if quarantine is not None else Quarantine()
    lines = _timeline(history)
    newest = len(history) - 1
    since = len(history) - options.window
    adds: list[Proposal] = []
    excluded: list[Exclusion] = []
    for subject in sorted(lines):
        line = lines[subject]
        seen = [(run, obs) for index, run, obs in line if index >= since]
        if not seen:
            continue
        judged = _judge(subject, seen, line[0][0], newest, options,
                        _quarantined(quarantine, subject))
        if isinstance(judged, Proposal):
            adds.append(judged)
        elif judged is not None:
            excluded.append(judged)
    removals = sorted(_removals(history, lines, quarantine, options), key=lambda p: p.subject)
    window = history[max(since, 0):]
    return Proposals(tuple(r.run_id for r in window), tuple(adds), tuple(removals),
                     tuple(excluded))
