"""--rtgov-schedule: the planned order with and without xdist, its record and leaves,
per-test seeds, the deviation check, a crashed worker's re-plan and bad input."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core.schedule import Plan, plan_schedule
from pytest_rtgov.store.objects import ObjectStore
from tests.plugin._cli import cli

SUITE = """
import random

import numpy as np
import pytest

@pytest.fixture(scope="session")
def trained(rtgov):
    rtgov.record("train_loss", 0.125, higher_is_better=False)
    return 42

@pytest.mark.parametrize("i", range(10))
def test_uses_trained(trained, rtgov, i):
    rtgov.record("score", float(i), higher_is_better=True)
    assert trained == 42

def test_seeds(rtgov_rng, request):
    line = f"{request.node.nodeid} {rtgov_rng.integers(10**9)} {random.random()} "
    line += f"{np.random.random()}\\n"
    with open("seeds.txt", "a") as out:
        out.write(line)
"""

REVERSE = """
import pytest

@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items):
    items.reverse()
"""


def _plan(root: Path, record: dict) -> Plan:
    digest = record["schedule"]["plan"]
    return Plan.from_json(ObjectStore.of_state_dir(root / ".rtgov").get(digest))


def _leaves(root: Path, kind: str) -> list[dict]:
    from pytest_rtgov.store.ledger import Ledger

    found = []
    for frame in Ledger(root / ".rtgov" / "ledger").frames():
        leaf = json.loads(frame.payload)
        if leaf["kind"] == kind:
            found.append(leaf)
    return found


def test_without_xdist_the_plan_orders_the_session(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    result = pytester.runpytest("--rtgov", "--rtgov-schedule", "7", "-v")
    result.assert_outcomes(passed=11)
    record = read_latest(pytester.path)
    plan = _plan(pytester.path, record)
    assert plan.seed == 7 and plan.policy == "hash" and len(plan.workers) == 1
    result.stdout.fnmatch_lines(["rtgov schedule: seed 7, policy hash (again: "
                                 "--rtgov-schedule 7 --rtgov-schedule-policy hash)"])  # fmt: skip
    ran = [line.split(" ")[0] for line in result.outlines if " PASSED" in line]
    assert ran == list(plan.workers[0]) == record["schedule"]["observed"]["main"]
    assert record["schedule"]["workers"] == ["main"]
    assert plan.digest == plan_schedule(7, plan.workers[0], workers=1).digest

    again = pytester.runpytest("--rtgov", "--rtgov-schedule", "7")
    again.assert_outcomes(passed=11)
    assert read_latest(pytester.path)["schedule"]["plan"] == plan.digest
    other = pytester.runpytest("--rtgov", "--rtgov-schedule", "8")
    other.assert_outcomes(passed=11)
    assert read_latest(pytester.path)["schedule"]["plan"] != plan.digest


def test_per_test_seeds_do_not_depend_on_what_ran_before(pytester):
    pytester.makepyfile(test_suite=SUITE)
    seeds = pytester.path / "seeds.txt"
    pytester.runpytest("--rtgov-schedule", "5").assert_outcomes(passed=11)
    pytester.runpytest("--rtgov-schedule", "5", "-k", "test_seeds").assert_outcomes(passed=1)
    pytester.runpytest("--rtgov-schedule", "6", "-k", "test_seeds").assert_outcomes(passed=1)
    full, alone, other = seeds.read_text().splitlines()
    assert full == alone and other != full


def test_a_plugin_that_reorders_fails_the_session_naming_the_deviation(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(REVERSE)
    plan = plan_schedule(3, [f"test_suite.py::test_uses_trained[{i}]" for i in range(10)]
                         + ["test_suite.py::test_seeds"], workers=1)  # fmt: skip
    first, last = plan.workers[0][0], plan.workers[0][-1]
    deviation = f"*the schedule was not followed: worker main: expected {first} at position 1, " \
        f"ran {last}*"  # fmt: skip
    result = pytester.runpytest("--rtgov", "--rtgov-schedule", "3")
    assert result.ret == 6
    result.stderr.fnmatch_lines([deviation.replace("[", "[[]")])
    assert read_latest(pytester.path)["exit_status"] == 6

    bare = pytester.runpytest("--rtgov-schedule", "3")  # without --rtgov: the same check
    assert bare.ret == 6
    bare.stderr.fnmatch_lines([deviation.replace("[", "[[]")])


def test_under_xdist_each_worker_runs_its_planned_list(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)
    digests = set()
    for _ in range(2):
        result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", "11", "-n", "2")
        result.assert_outcomes(passed=11)
        record = read_latest(pytester.path)
        plan = _plan(pytester.path, record)
        digests.add(plan.digest)
        assert len(plan.workers) == 2 and all(plan.workers)
        assert record["schedule"]["observed"] == {"gw0": list(plan.workers[0]),
                                                  "gw1": list(plan.workers[1])}  # fmt: skip
        by_test = {t["nodeid"]: t["worker"] for t in record["tests"]}
        assert all(by_test[n] == f"gw{i}" for i, ts in enumerate(plan.workers) for n in ts)
    assert len(digests) == 1
    (schedule,) = _leaves(pytester.path, "schedule")[-1:]
    assert (schedule["seed"], schedule["policy"], schedule["plan"]) == (11, "hash", plan.digest)
    assert schedule["workers"] == ["gw0", "gw1"] and schedule["cost_model"].startswith("sha256:")
    executions = _leaves(pytester.path, "execution")[-2:]
    assert [(e["worker"], e["sequence"]) for e in executions] == [
        ("gw0", list(plan.workers[0])), ("gw1", list(plan.workers[1]))
    ]  # fmt: skip
    assert cli(pytester, "verify") == 0


def _crash_seed() -> tuple[int, int]:
    """A seed whose plan puts test_crash first on its worker with tests after it."""
    nodeids = [f"test_c.py::test_p[{i}]" for i in range(6)] + ["test_c.py::test_crash"]
    for seed in range(1000):
        plan = plan_schedule(seed, nodeids, workers=2)
        worker = plan.worker_of("test_c.py::test_crash")
        tests = plan.workers[worker]
        if tests[0] == "test_c.py::test_crash" and len(tests) >= 3:
            return seed, worker
    raise AssertionError("no seed")


def test_a_crashed_workers_tests_are_replanned_on_the_live_one(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_c="""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_p(i):
            pass

        def test_crash():
            os._exit(3)
        """
    )
    seed, crashed = _crash_seed()
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", str(seed), "-n", "2")
    result.assert_outcomes(passed=6, failed=1)
    assert result.ret == 1  # the crash, not a deviation
    assert "schedule was not followed" not in result.stderr.str()
    record = read_latest(pytester.path)
    plan = _plan(pytester.path, record)
    (replan,) = plan.replans
    assert replan.crashed == crashed and len(replan.moved) >= 2
    live = 1 - crashed
    assert set(replan.moved.values()) == {live}
    assert plan.workers[crashed] == ("test_c.py::test_crash",)
    assert record["schedule"]["observed"][f"gw{live}"] == list(plan.workers[live])
    assert record["schedule"]["replans"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--rtgov-schedule", "abc"], "*--rtgov-schedule: expected a non-negative integer*'abc'*"),
        (["--rtgov-schedule", "-3"], "*--rtgov-schedule: expected a non-negative integer*"),
        (["--rtgov-schedule", "1", "--rtgov-schedule-policy", "fast"],
         "*--rtgov-schedule-policy: invalid choice: 'fast'*"),
    ],
)  # fmt: skip
def test_bad_option_values_exit_4_naming_the_option(pytester, args, message):
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest("--rtgov", *args)
    assert result.ret == 4
    result.stderr.fnmatch_lines([message])
    assert not (pytester.path / ".rtgov" / "runs").exists()


def test_a_bad_ini_seed_names_the_key(pytester):
    pytester.makeini("[pytest]\nrtgov_schedule = twelve\n")
    pytester.makepyfile(test_one="def test_one():\n    pass\n")
    result = pytester.runpytest()
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--rtgov-schedule*'twelve'*"])


def test_more_workers_than_tests_exits_4_and_keeps_the_record(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_one="def test_one():\n    pass\n\ndef test_two():\n    pass\n")
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", "1", "-n", "3")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*--rtgov-schedule: 3 workers for 2 tests*"])
    assert read_latest(pytester.path)["exit_status"] == 4
    assert cli(pytester, "verify") == 0


def test_lpt_costs_come_from_the_last_runs(pytester, read_latest):
    from pytest_rtgov.core.schedule import cost_model_digest
    from pytest_rtgov.plugin.schedule.costs import median_costs

    assert median_costs([{"a": 1.0, "b": 2.0}, {"a": 3.0}, {"a": 2.0}]) == {"a": 2.0, "b": 2.0}
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=11)
    result = pytester.runpytest(
        "--rtgov", "--rtgov-schedule", "2", "--rtgov-schedule-policy", "lpt"
    )
    result.assert_outcomes(passed=11)
    schedule = read_latest(pytester.path)["schedule"]
    assert schedule["policy"] == "lpt"
    assert schedule["cost_model"] != cost_model_digest({})


def test_a_recorded_plan_runs_again_and_another_collections_is_refused(pytester, read_latest):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov", "--rtgov-schedule", "4").assert_outcomes(passed=11)
    digest = read_latest(pytester.path)["schedule"]["plan"]
    file = ObjectStore.of_state_dir(pytester.path / ".rtgov").path(digest)
    again = pytester.runpytest("--rtgov", "--rtgov-schedule-plan", str(file))
    again.assert_outcomes(passed=11)
    record = read_latest(pytester.path)
    assert record["schedule"]["plan"] == digest and record["schedule"]["seed"] == 4
    assert record["schedule"]["observed"]["main"] == list(_plan(pytester.path, record).nodeids)

    pytester.makepyfile(test_more="def test_more():\n    pass\n")
    result = pytester.runpytest("--rtgov", "--rtgov-schedule-plan", str(file))
    assert result.ret == 4
    result.stderr.fnmatch_lines([
        f"*--rtgov-schedule-plan: {file}: a plan of another collection: it does not plan 1 "
        "collected test(s) (test_more.py::test_more)*"
    ])  # fmt: skip
    other_seed = pytester.runpytest("--rtgov-schedule", "5", "--rtgov-schedule-plan", str(file))
    assert other_seed.ret == 4
    other_seed.stderr.fnmatch_lines(["*--rtgov-schedule 5: *planned from seed 4*"])
    bad = pytester.path / "plan.json"
    bad.write_text('{"schema": "rtgov.plan/1"}')
    broken = pytester.runpytest("--rtgov-schedule-plan", "plan.json")
    assert broken.ret == 4
    broken.stderr.fnmatch_lines([f"*--rtgov-schedule-plan: {bad}: at the top: expected*"])


def test_a_plan_for_other_workers_is_refused_under_xdist(pytester, read_latest):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov", "--rtgov-schedule", "4").assert_outcomes(passed=11)
    digest = read_latest(pytester.path)["schedule"]["plan"]
    file = ObjectStore.of_state_dir(pytester.path / ".rtgov").path(digest)
    result = pytester.runpytest_subprocess("--rtgov-schedule-plan", str(file), "-n", "2")
    assert result.ret == 4
    result.stderr.fnmatch_lines(["*a plan for 1 worker(s): this session runs 2 (-n 2)*"])


def test_the_plan_does_not_depend_on_hash_seed_file_order_or_worker_start(
    pytester, read_latest, monkeypatch
):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_suite=SUITE, test_other="def test_x():\n    pass\n")
    pytester.makeconftest(
        """
        import random
        import time

        def pytest_configure(config):
            if hasattr(config, "workerinput"):  # workers come up in any order
                time.sleep(random.random() / 2)
        """
    )
    digests, observed = set(), []
    # issue 17's done-when: 5 sessions, PYTHONHASHSEED varied, files in shuffled order,
    # workers starting after random delays: one plan digest, one observed schedule
    for hashseed, files in (("1", ("test_suite.py", "test_other.py")),
                            ("777", ("test_other.py", "test_suite.py")),
                            ("31337", ("test_suite.py", "test_other.py")),
                            ("0", ("test_other.py", "test_suite.py")),
                            ("4242", ("test_other.py", "test_suite.py"))):  # fmt: skip
        monkeypatch.setenv("PYTHONHASHSEED", hashseed)
        result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", "42", "-n", "2",
                                               *files)  # fmt: skip
        result.assert_outcomes(passed=12)
        schedule = read_latest(pytester.path)["schedule"]
        digests.add(schedule["plan"])
        observed.append(schedule["observed"])
    assert len(digests) == 1 and all(o == observed[0] for o in observed) and len(observed) == 5
    # and a different seed, a different plan
    result = pytester.runpytest_subprocess("--rtgov", "--rtgov-schedule", "43", "-n", "2")
    result.assert_outcomes(passed=12)
    assert read_latest(pytester.path)["schedule"]["plan"] not in digests


def test_merge_checks_that_every_shard_followed_the_schedule(pytester, read_latest, monkeypatch):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makeconftest(
        """
        import os
        import pytest

        @pytest.hookimpl(trylast=True)
        def pytest_collection_modifyitems(items):
            if os.environ.get("REVERSE_ITEMS"):
                items.reverse()
        """
    )
    runs = []
    for shard in ("1/2", "2/2"):
        result = pytester.runpytest("--rtgov", "--rtgov-schedule", "9", "--rtgov-shard", shard)
        assert result.ret == 0
        runs.append(read_latest(pytester.path)["run_id"])
    # the rtgov command in its own process: in-process pytester runs drop the modules they
    # imported, and a ShardMergeError of a re-imported module would not map to exit 9
    rtgov = str(Path(sys.executable).parent / "rtgov")
    assert pytester.run(rtgov, "merge", *runs).ret == 0

    monkeypatch.setenv("REVERSE_ITEMS", "1")
    result = pytester.runpytest("--rtgov", "--rtgov-schedule", "9", "--rtgov-shard", "2/2")
    assert result.ret == 6
    deviated = read_latest(pytester.path)
    assert deviated["schedule"]["deviation"].startswith("worker main: expected ")
    merged = pytester.run(rtgov, "merge", runs[0], deviated["run_id"])
    assert merged.ret == 9
    assert (
        f"the shards did not follow one schedule: shard {deviated['run_id']} did not follow its "
        "schedule: worker main: expected " in merged.stderr.str()
    )


def test_a_gated_scheduled_run_is_audited_with_its_schedule_leaves(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates="[defaults]\n")
    result = pytester.runpytest("--rtgov-gate", "--rtgov-schedule", "2")
    assert result.ret == 0
    rtgov = str(Path(sys.executable).parent / "rtgov")
    audited = pytester.run(rtgov, "audit")
    assert audited.ret == 0, audited.stdout.str() + audited.stderr.str()
    assert "1 re-derived" in audited.stdout.str()


def test_workers_that_collect_different_tests_end_the_session(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_d="""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(3 if os.environ["PYTEST_XDIST_WORKER"] == "gw1"
                                            else 2))
        def test_d(i):
            pass
        """
    )
    result = pytester.runpytest_subprocess("--rtgov-schedule", "1", "-n", "2", timeout=120)
    # xdist names the pair in the order their collections arrived: either order
    result.stdout.fnmatch_lines(["*Different tests were collected between gw? and gw?*"])
    assert result.ret != 0
