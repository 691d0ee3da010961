"""The sequential A/B rule of core/sequential.py: error rates under optional stopping,
power, early stops, and the clock it judges on. Seeded simulations, no timing."""

from __future__ import annotations

import math
import random

import msgspec
import pytest

from pytest_rtgov.core.gate_rules import wilcoxon_worse_p
from pytest_rtgov.core.records import Sample
from pytest_rtgov.core.sequential import (
    Plan,
    choose_clock,
    describe,
    judge,
    median_upper_bound,
)

BASE_NS = 1_500_000  # a 1.5 ms round


def heavy(rng: random.Random, scale: float, df: float = 2.0) -> float:
    """Student t noise (heavy tails) with ``df`` degrees of freedom, times ``scale``."""
    z = rng.gauss(0, 1)
    chi = sum(rng.gauss(0, 1) ** 2 for _ in range(int(df)))
    return scale * z / math.sqrt(max(chi, 1e-12) / int(df))


def session(
    rng: random.Random,
    pairs: int,
    effect: float = 0.0,
    noise: float = 0.02,
    share: float = 1.0,
    load: float = 0.0,
    gpu: bool = False,
) -> list[Sample]:
    """Recorded A/B samples: per pair a current and a baseline round. CPU time carries
    ``effect`` and heavy-tailed ``noise``; wall time is CPU time / ``share``, and with
    probability ``load`` a round also waits for a core (wall up to 5x)."""
    out = []
    for _ in range(pairs):
        for variant, factor in (("current", 1 + effect), ("baseline", 1.0)):
            cpu = BASE_NS * factor * math.exp(heavy(rng, noise))
            wall = cpu / share
            if rng.random() < load:
                wall *= 1 + rng.uniform(1.5, 4)
            out.append(
                Sample(
                    int(wall), int(cpu), variant=variant, gpu_time_ns=int(cpu) if gpu else None
                )
            )
    return out


def test_plan_spends_exactly_alpha_over_its_looks():
    plan = Plan(first=20, max_pairs=100, alpha=0.01, gamma=0.01)
    assert plan.looks() == (20, 40, 60, 80, 100)
    assert sum(plan.look_alpha(k) for k in range(5)) == pytest.approx(0.01)
    assert Plan(first=20, max_pairs=10, alpha=0.01, gamma=0.01).looks() == (20,)


def test_median_upper_bound_covers_the_median():
    rng = random.Random(7)
    misses = sum(
        median_upper_bound([heavy(rng, 1.0) for _ in range(30)], 0.05) < 0 for _ in range(2000)
    )
    assert misses / 2000 <= 0.05 + 0.015


def test_false_alarms_under_optional_stopping_hold_alpha():
    """Null sessions, heavy-tailed noise, a zero threshold (significance alone decides):
    peeking at every look with the full alpha inflates false alarms; the plan does not."""
    rng = random.Random(13)
    plan = Plan(first=20, max_pairs=100, alpha=0.05, gamma=0.05)
    runs, alarms, naive = 1000, 0, 0
    for _ in range(runs):
        samples = session(rng, 100, noise=0.05)
        result = judge(samples, "cpu_time", plan, pct=0.0, absolute=None)
        alarms += result.decision == "breach"
        logs = [(c.cpu_ns, b.cpu_ns) for c, b in zip(samples[::2], samples[1::2], strict=True)]
        naive += any(wilcoxon_worse_p(logs[:n]) < plan.alpha for n in plan.looks())
    assert alarms / runs <= plan.alpha + 3 * math.sqrt(plan.alpha * (1 - plan.alpha) / runs)
    assert naive / runs > plan.alpha  # what the spending protects against


def test_unchanged_code_on_a_loaded_machine_does_not_breach_and_stops_early():
    rng = random.Random(21)
    plan = Plan(first=20, max_pairs=100, alpha=0.01 / 10, gamma=0.01)
    results = [
        judge(session(rng, 100, noise=0.02, load=0.3), "wall_time", plan, pct=5, absolute=None)
        for _ in range(300)
    ]
    assert sum(r.decision == "breach" for r in results) <= 300 / 20
    assert all(r.clock.metric == "cpu_time" for r in results)
    # they stop as clearly within, most at the first look: the cost of gating unchanged code
    assert sum(r.decision == "within" for r in results) >= 0.95 * 300
    assert sum(r.looks[-1][0] for r in results) / 300 <= 40


def test_ten_percent_is_caught_under_load_judged_on_cpu_time():
    rng = random.Random(34)
    plan = Plan(first=20, max_pairs=100, alpha=0.01 / 10, gamma=0.01)
    results = [
        judge(
            session(rng, 100, effect=0.10, noise=0.03, load=0.3),
            "wall_time",
            plan,
            pct=5,
            absolute=None,
        )
        for _ in range(200)
    ]
    assert sum(r.decision == "breach" for r in results) >= 0.95 * 200
    reported = sorted(r.effect.relative for r in results if r.decision == "breach")
    assert abs(reported[len(reported) // 2] - 0.10) < 0.01
    assert sum(r.looks[-1][0] < 100 for r in results) >= 0.9 * 200  # stopped early


def test_on_wall_time_leaving_disturbed_pairs_out_keeps_the_power():
    """Code that waits (half its time) judged on wall time under the same load: the
    rounds that also waited for a core are left out, and +10% is still caught."""
    rng = random.Random(34)
    plan = Plan(first=20, max_pairs=100, alpha=0.01 / 10, gamma=0.01)
    caught = 0
    for _ in range(60):
        samples = session(rng, 100, effect=0.10, noise=0.03, load=0.3, share=0.5)
        result = judge(samples, "wall_time", plan, pct=5, absolute=None)
        assert result.clock.metric == "wall_time" and result.disturbed > 0
        assert result.used < result.looks[-1][0]
        caught += result.decision == "breach"
    assert caught >= 0.95 * 60


def test_an_ambiguous_case_measures_to_the_cap():
    rng = random.Random(5)
    plan = Plan(first=20, max_pairs=60, alpha=0.001, gamma=0.01)
    result = judge(
        session(rng, 60, effect=0.05, noise=0.3), "cpu_time", plan, pct=5, absolute=None
    )
    assert result.decision == "open" and result.done
    assert [n for n, _ in result.looks] == [20, 40, 60]
    # fewer pairs recorded (the time cap): judged on the looks reached, not done
    short = judge(session(rng, 30, effect=0.05, noise=0.3), "cpu_time", plan, 5, None)
    assert [n for n, _ in short.looks] == [20] and not short.done


@pytest.mark.parametrize(
    ("metric", "share", "gpu", "clock", "why"),
    [
        ("wall_time", 1.0, False, "cpu_time", "CPU-bound"),
        ("wall_time", 0.1, False, "wall_time", "waits"),
        ("wall_time", 1.8, False, "wall_time", "several threads"),
        ("wall_time", 1.0, True, "wall_time", "GPU time recorded"),
        ("cpu_time", 0.1, False, "cpu_time", "the gate's metric"),
        ("gpu_time", 1.0, True, "gpu_time", "the gate's metric"),
    ],
)
def test_the_clock(metric, share, gpu, clock, why):
    samples = session(random.Random(1), 20, share=share, gpu=gpu, load=0.2)
    pairs = list(zip(samples[::2], samples[1::2], strict=True))
    chosen = choose_clock(pairs, metric)
    assert chosen.metric == clock and why in chosen.why


def test_disturbed_pairs_are_counted_and_left_out_on_wall_time_only():
    rng = random.Random(3)
    plan = Plan(first=20, max_pairs=20, alpha=0.01, gamma=0.01)
    on_cpu = judge(session(rng, 20, load=0.25), "wall_time", plan, pct=5, absolute=None)
    assert on_cpu.clock.metric == "cpu_time"
    assert on_cpu.disturbed > 0 and on_cpu.used == 20  # counted, kept
    threads = session(rng, 20, load=0.25, share=1.5)
    on_wall = judge(threads, "wall_time", plan, pct=5, absolute=None)
    assert on_wall.clock.metric == "wall_time"
    assert on_wall.disturbed > 0 and on_wall.used == 20 - on_wall.disturbed
    assert f"{on_wall.disturbed} of 20 pairs disturbed" in describe(on_wall)
    # when nearly all pairs are disturbed, that is the norm: all are kept, and it says so
    mostly = judge(session(rng, 20, load=0.95, share=1.5), "wall_time", plan, 5, None)
    assert mostly.disturbed > 15 and mostly.used == 20
    assert "pairs disturbed (a round waited for a core), kept: too many" in describe(mostly)


def test_the_least_disturbed_round_decides_and_sustained_load_falls_back_to_wall():
    rng = random.Random(8)
    # heavy load: most rounds lose the core, a few do not: still CPU-bound
    mostly = session(rng, 20, load=0.8)
    pairs = list(zip(mostly[::2], mostly[1::2], strict=True))
    assert choose_clock(pairs, "wall_time").metric == "cpu_time"
    # every round lost the core: nothing shows the code does not wait: wall time
    always = session(rng, 20, load=1.0)
    pairs = list(zip(always[::2], always[1::2], strict=True))
    assert choose_clock(pairs, "wall_time").metric == "wall_time"


def _with_switches(samples, switches):
    pairs = zip(samples, switches, strict=True)
    return [msgspec.structs.replace(s, voluntary_switches=n) for s, n in pairs]


def test_context_switches_tell_load_from_waits_under_sustained_load():
    rng = random.Random(8)
    # every round lost the core (involuntary switches are not recorded) but none
    # blocked: CPU-bound, judged on CPU time although CPU/wall is far below 0.9
    always = _with_switches(session(rng, 20, load=1.0), [0] * 40)
    pairs = list(zip(always[::2], always[1::2], strict=True))
    chosen = choose_clock(pairs, "wall_time")
    assert chosen.metric == "cpu_time"
    assert "20 of 20 rounds without a voluntary context switch" in chosen.why
    # code that blocks (I/O, sleep) in most rounds: wall time, whatever the load
    blocking = _with_switches(session(rng, 20, share=0.1), [1, 0] * 20)
    pairs = list(zip(blocking[::2], blocking[1::2], strict=True))
    chosen = choose_clock(pairs, "wall_time")
    assert chosen.metric == "wall_time" and "blocking waits" in chosen.why
    # one blocked round in twenty is not a waiting test (a page cache flush, a signal)
    rare = _with_switches(session(rng, 20, load=1.0), [1] + [0] * 39)
    pairs = list(zip(rare[::2], rare[1::2], strict=True))
    assert choose_clock(pairs, "wall_time").metric == "cpu_time"
    # several threads still judge on wall time, switches or not
    threads = _with_switches(session(rng, 20, share=1.8), [0] * 40)
    pairs = list(zip(threads[::2], threads[1::2], strict=True))
    assert choose_clock(pairs, "wall_time").metric == "wall_time"


def test_switch_counts_round_trip_and_old_samples_keep_their_bytes():
    sample = Sample(10, 9, variant="baseline", voluntary_switches=2)
    assert Sample(**sample.to_dict()) == sample
    assert "voluntary_switches" not in Sample(10, 9).to_dict()


def test_one_round_whose_clocks_disagree_does_not_make_a_loop_several_threads():
    """A CPU-bound loop where one round's CPU time jumped (28x its wall time, seen on a
    loaded virtual machine): still CPU-bound, judged on CPU time; two such rounds are
    several threads."""
    import msgspec

    samples = session(random.Random(1), 20, share=1.0, gpu=False, load=0.2)
    pairs = list(zip(samples[::2], samples[1::2], strict=True))
    odd = msgspec.structs.replace(pairs[3][0], cpu_ns=pairs[3][0].wall_ns * 28)
    pairs[3] = (odd, pairs[3][1])
    assert choose_clock(pairs, "wall_time").metric == "cpu_time"
    other = msgspec.structs.replace(pairs[5][0], cpu_ns=pairs[5][0].wall_ns * 28)
    pairs[5] = (other, pairs[5][1])
    assert "several threads" in choose_clock(pairs, "wall_time").why
