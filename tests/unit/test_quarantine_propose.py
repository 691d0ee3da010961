"""Quarantine proposals' pure core (core/quarantine_propose.py): on a seeded synthetic
history, the flaky tests are proposed and the broken, new and environment-caused ones are
not; gates with unconfirmed breaches are proposed; clean runs propose removal."""

from __future__ import annotations

import random

import pytest

from pytest_rtgov.core.quarantine import CheckedEntry, Entry, Quarantine
from pytest_rtgov.core.quarantine_propose import (
    CLEAN,
    FAIL,
    RETRY,
    Options,
    RunFacts,
    beta_interval,
    propose,
)

BASE_ENV = {"numpy": "2.4.6", "cpu_model": "AMD EPYC", "env.OMP_NUM_THREADS": ""}
ODD_ENV = {"numpy": "2.5.0", "cpu_model": "Ampere Altra", "env.OMP_NUM_THREADS": "1"}


def synthetic_history(seed: int, runs: int = 40) -> tuple[list[RunFacts], dict[str, set[str]]]:
    """200 tests over ``runs`` runs: 10 flaky (bad rate 0.15 to 0.4, half the bad runs
    passing on rerun), 3 broken (two always, one since run 30), 3 new (only in the newest
    2 runs, failing there), 3 failing exactly where one fingerprint field differs, and 181
    healthy ones with rare one-off failures (rate 0.002: infrastructure noise)."""
    rng = random.Random(seed)
    names = [f"tests/test_{i // 20:02d}.py::test_{i:03d}" for i in range(200)]
    shuffled = names[:]
    rng.shuffle(shuffled)
    groups = {
        "flaky": set(shuffled[:10]), "broken": set(shuffled[10:13]),
        "new": set(shuffled[13:16]), "environment": set(shuffled[16:19]),
    }
    flaky_rate = {name: 0.15 + 0.25 * i / 9 for i, name in enumerate(sorted(groups["flaky"]))}
    env_test = dict(zip(sorted(groups["environment"]), BASE_ENV, strict=False))  # test -> field
    broken = sorted(groups["broken"])
    history = []
    for r in range(runs):
        odd = {key: rng.random() < 0.2 for key in BASE_ENV}  # each field differs in ~20%
        environment = {k: (ODD_ENV[k] if odd[k] else BASE_ENV[k]) for k in BASE_ENV}
        tests: dict[str, str] = {}
        for name in names:
            if name in groups["new"]:
                if r >= runs - 2:
                    tests[name] = FAIL if r == runs - 1 else CLEAN
                continue
            if name in groups["broken"]:
                tests[name] = CLEAN if name == broken[0] and r < 30 else FAIL
            elif name in env_test:
                tests[name] = FAIL if odd[env_test[name]] else CLEAN
            elif name in flaky_rate:
                bad = rng.random() < flaky_rate[name]
                tests[name] = (FAIL if rng.random() < 0.5 else RETRY) if bad else CLEAN
            else:
                tests[name] = FAIL if rng.random() < 0.002 else CLEAN
        history.append(RunFacts(f"run-{r:03d}", f"sha256:{r:064x}", environment, tests))
    return history, groups


@pytest.mark.parametrize("seed", [18, 1818, 4242])
def test_propose_flags_the_flaky_and_none_of_the_broken_new_or_environment_ones(
    seed: int,
) -> None:
    history, groups = synthetic_history(seed)
    found = propose(history)
    proposed = {p.subject for p in found.adds}
    assert len(proposed & groups["flaky"]) >= 9
    others = groups["broken"] | groups["new"] | groups["environment"]
    assert not proposed & others
    assert len(proposed - groups["flaky"]) <= 1  # false positives
    reasons = {e.subject: e for e in found.excluded}
    assert {reasons[s].reason for s in groups["broken"]} == {"broken"}
    assert {reasons[s].reason for s in groups["new"]} == {"new"}
    assert {reasons[s].reason for s in groups["environment"]} == {"environment"}
    assert {reasons[s].field for s in groups["environment"]} == set(BASE_ENV)
    assert [p.subject for p in found.adds] == sorted(proposed)  # deterministic order
    assert found == propose(history)


def test_a_proposal_carries_its_evidence() -> None:
    history, _ = synthetic_history(18)
    adds = propose(history).adds
    for proposal in adds:
        est = proposal.estimate
        assert est.runs == 30 and est.bad == len(est.bad_runs) == len(est.evidence) >= 2
        assert est.low < est.mean < est.high and est.transitions >= 1
        assert est.mean == pytest.approx((1 + est.bad) / (2 + est.runs))
    assert any(p.estimate.retries for p in adds)
    one = next(e for e in propose(history).excluded if e.reason == "environment")
    assert one.detail.startswith(f"environment: fails only where {one.field} is ")


def test_a_broken_test_says_since_when() -> None:
    history, _ = synthetic_history(18)
    details = {e.detail for e in propose(history).excluded if e.reason == "broken"}
    assert "broken: fails every run of the window" in details
    assert "broken: fails every run since run-030; passed before" in details


@pytest.mark.parametrize(("alpha", "beta"), [(1, 1), (2, 30), (3, 29), (12, 20), (1, 60)])
def test_beta_interval_is_scipys(alpha: int, beta: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    low, high = beta_interval(alpha, beta)
    assert low == pytest.approx(stats.beta.ppf(0.05, alpha, beta), abs=1e-9)
    assert high == pytest.approx(stats.beta.ppf(0.95, alpha, beta), abs=1e-9)


def _gate_run(r: int, status: str) -> RunFacts:
    return RunFacts(f"run-{r:03d}", f"sha256:{r:064x}", BASE_ENV,
                    {"t.py::x": CLEAN}, {("step_time", "t.py::x"): status})


def test_a_gate_with_unconfirmed_breaches_is_proposed_by_gate_and_subject() -> None:
    statuses = [RETRY if r % 6 == 2 else CLEAN for r in range(30)]
    found = propose([_gate_run(r, s) for r, s in enumerate(statuses)])
    assert [p.subject for p in found.adds] == ["gate:step_time:t.py::x"]
    assert found.adds[0].estimate.retries == 5 and found.adds[0].estimate.failures == 0


def test_a_gate_breached_in_every_run_is_broken() -> None:
    found = propose([_gate_run(r, FAIL) for r in range(30)])
    assert not found.adds and found.excluded[0].reason == "broken"


def _quarantined(subject: str) -> Quarantine:
    entry = Entry(subject, "ana", "flaky network", "https://issues.example/18",
                  "2026-11-01", "2026-11-14")
    return Quarantine((CheckedEntry(entry, "sha256:" + "ab" * 32, "valid"),))


@pytest.mark.parametrize(("clean", "proposed"), [(20, True), (19, False)])
def test_consecutive_clean_runs_of_a_quarantined_test_propose_its_removal(
    clean: int, proposed: bool,
) -> None:
    states = [FAIL, CLEAN, RETRY, CLEAN, FAIL] + [CLEAN] * clean
    history = [RunFacts(f"run-{r:03d}", "", BASE_ENV, {"t.py::x": s, "t.py::y": CLEAN})
               for r, s in enumerate(states)]
    found = propose(history, _quarantined("t.py::x"), Options(window=30))
    assert [(p.subject, p.clean_runs) for p in found.removals] == (
        [("t.py::x", 20)] if proposed else []
    )
    assert not found.adds  # already quarantined: never proposed again
    assert [e.reason for e in found.excluded] == ["quarantined"]


def test_a_quarantined_gate_without_subject_counts_every_subject() -> None:
    history = [
        RunFacts(f"run-{r:03d}", "", BASE_ENV, {}, {
            ("step_time", "a"): CLEAN, ("step_time", "b"): RETRY if r == 3 else CLEAN,
        })
        for r in range(24)
    ]
    found = propose(history, _quarantined("gate:step_time"))
    assert [(p.subject, p.clean_runs) for p in found.removals] == [("gate:step_time", 20)]


def _line(states: list[str], numpy: list[str] | None = None) -> list[RunFacts]:
    return [
        RunFacts(f"run-{r:03d}", "", {**BASE_ENV, "numpy": numpy[r] if numpy else "2.4.6"},
                 {"t.py::x": s})
        for r, s in enumerate(states)
    ]


def test_a_failure_that_began_with_an_upgrade_names_the_field_not_broken() -> None:
    numpy = ["2.4.6"] * 20 + ["2.5.0"] * 10
    found = propose(_line([CLEAN] * 20 + [FAIL] * 10, numpy))
    (excluded,) = found.excluded
    assert (excluded.reason, excluded.field) == ("environment", "numpy")
    assert excluded.detail == (
        "environment: fails only where numpy is '2.5.0'; passes where it is '2.4.6'"
    )


@pytest.mark.parametrize(("states", "reason"), [
    ([FAIL] * 10 + [CLEAN] * 20, "fixed"),
    ([CLEAN] * 14 + [FAIL] + [CLEAN] * 15, "rare"),  # one failure in 30: lower end 0.012
    ([], "new"),  # the history below
])
def test_what_is_not_intermittent_enough(states: list[str], reason: str) -> None:
    history = _line(states)
    if reason == "new":  # a test first run in the newest runs
        history = [RunFacts(f"old-{r}", "", BASE_ENV, {"t.py::y": CLEAN}) for r in range(10)]
        history += [RunFacts("run-a", "", BASE_ENV, {"t.py::x": FAIL}),
                    RunFacts("run-b", "", BASE_ENV, {"t.py::x": CLEAN})]
    (excluded,) = propose(history).excluded
    assert excluded.reason == reason


@pytest.mark.slow
def test_the_target_holds_on_192_of_200_seeded_histories() -> None:
    """Not only on the chosen seeds: over seeds 0..199 the done-when target (at least 9
    of 10 flaky, none of the other 9, at most 1 false positive) holds on 192. The 8
    misses: 7 histories where a healthy test failed twice at random (rate 0.002) within
    the window, which is flakiness by construction, and 1 where 8 flaky were found."""
    met, misses = 0, []
    for seed in range(200):
        history, groups = synthetic_history(seed)
        proposed = {p.subject for p in propose(history).adds}
        others = groups["broken"] | groups["new"] | groups["environment"]
        flaky, wrong = len(proposed & groups["flaky"]), proposed & others
        extra = len(proposed - groups["flaky"])
        if flaky >= 9 and not wrong and extra <= 1:
            met += 1
        else:
            misses.append((seed, flaky, len(wrong), extra))
    assert all(not wrong for _, _, wrong, _ in misses)  # never broken, new or environment
    assert met == 192, misses
