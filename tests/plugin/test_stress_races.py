"""The plugin's own race conditions, with real processes: concurrent sessions on one state
directory, an xdist worker killed mid-session, two ``rtgov merge`` at once and a stage
computed by two workers at once. Each time nothing recorded is lost and ``rtgov verify``
passes. Slow: ``pytest -m slow``.

The ledger writer's own crash and concurrency trials are tests/unit/test_ledger_stress.py;
two sessions storing one stage key in a shared store, tests/plugin/test_stages_remote.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core.ledger_records import parse_leaf
from pytest_rtgov.store.ledger import Ledger

pytestmark = pytest.mark.slow

RTGOV = str(Path(sys.executable).parent / "rtgov")
PYTEST = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]

# Each test waits (at most 30 s) until every session has started one, so they overlap.
SUITE = """
import os
import time
from pathlib import Path

import pytest

@pytest.mark.parametrize("i", range(4))
def test_meet(rtgov, i):
    barrier = Path(os.environ["BARRIER"])
    (barrier / f"{os.getpid()}-{i}").touch()
    deadline = time.monotonic() + 30
    while len({p.name.split("-")[0] for p in barrier.iterdir()}) < int(os.environ["PARTIES"]):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    rtgov.record("score", float(i), higher_is_better=True)
"""


def _leaves(state: Path) -> list[dict]:
    return [parse_leaf(frame.payload) for frame in Ledger(state / "ledger").frames()]


def _records(state: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*.json"))]


def _verify(pytester: pytest.Pytester, state: Path) -> None:
    done = pytester.run(RTGOV, "--dir", str(state), "verify")
    assert done.ret == 0, done.stdout.str() + done.stderr.str()


def _start(pytester: pytest.Pytester, *args: str, parties: int) -> subprocess.Popen[str]:
    barrier = pytester.path / "barrier"
    barrier.mkdir(exist_ok=True)
    env = {**os.environ, "BARRIER": str(barrier), "PARTIES": str(parties)}
    env.pop("PYTEST_ADDOPTS", None)
    return subprocess.Popen([*PYTEST, *args], cwd=pytester.path, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip


def test_concurrent_sessions_on_one_state_directory_lose_nothing(pytester):
    pytester.makepyfile(test_suite=SUITE)
    sessions = [_start(pytester, "--rtgov", "-n", "0", parties=3) for _ in range(3)]
    outputs = [s.communicate(timeout=600)[0] for s in sessions]
    assert [s.returncode for s in sessions] == [0, 0, 0], outputs
    state = pytester.path / ".rtgov"
    records = _records(state)
    assert len(records) == 3 and all(len(r["tests"]) == 4 for r in records)
    verdicts = {leaf["run_id"] for leaf in _leaves(state) if leaf["kind"] == "verdict"}
    assert verdicts == {r["run_id"] for r in records}
    _verify(pytester, state)


def test_an_xdist_worker_killed_mid_session_loses_no_other_test(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(
        test_kill="""
        import os
        import signal

        import pytest

        @pytest.mark.parametrize("i", range(6))
        def test_fine(rtgov, i):
            rtgov.record("score", float(i), higher_is_better=True)

        def test_killed():
            os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    for extra in ((), ("--rtgov-schedule", "5")):
        session = _start(pytester, "--rtgov", "-n", "2", *extra, parties=1)
        output = session.communicate(timeout=600)[0]
        assert session.returncode == 1, output  # the killed test failed, nothing else
    state = pytester.path / ".rtgov"
    for record in _records(state):
        outcomes = {t["nodeid"]: t["outcome"] for t in record["tests"]}
        assert sorted(outcomes.values()).count("passed") == 6, outcomes
        assert outcomes["test_kill.py::test_killed"] in ("failed", "error")  # the crash item
    assert len(_records(state)) == 2
    _verify(pytester, state)


def test_two_merges_at_once_both_land_and_verify(pytester):
    pytester.makepyfile(test_suite=SUITE)
    runs = []
    for shard in ("1/2", "2/2"):
        session = _start(pytester, "--rtgov", "--rtgov-shard", shard, parties=1)
        assert session.wait(timeout=600) == 0
        runs.append((pytester.path / ".rtgov" / "latest").read_text().strip())
    merges = [
        subprocess.Popen(
            [RTGOV, "merge", *runs], cwd=pytester.path, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        )
        for _ in range(2)
    ]
    outputs = [m.communicate(timeout=600)[0] for m in merges]
    assert [m.returncode for m in merges] == [0, 0], outputs
    state = pytester.path / ".rtgov"
    records = _records(state)
    merged = [r for r in records if r["run_id"] not in runs]
    assert len(merged) == 2 and all(len(r["tests"]) == 4 for r in merged)
    verdicts = {leaf["run_id"] for leaf in _leaves(state) if leaf["kind"] == "verdict"}
    assert verdicts >= {r["run_id"] for r in records}
    _verify(pytester, state)


STAGE_CONFTEST = """
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pytest_rtgov import stage

@pytest.fixture(autouse=True)
def meet():  # before the stage's setup: both workers ask for it at once
    barrier = Path(os.environ["BARRIER"])
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 30
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)

@stage(seeds={"data": 0})
def shared(seeds):
    computed = Path(os.environ["BARRIER"]).parent / "computed"
    computed.mkdir(exist_ok=True)
    (computed / str(os.getpid())).touch()
    time.sleep(0.5)
    return {"x": np.random.default_rng(seeds["data"]).normal(size=8)}
"""

STAGE_TESTS = """
import pytest

@pytest.mark.parametrize("i", range(2))
def test_uses(shared, i):
    assert shared["x"].shape == (8,)
"""


def test_a_stage_asked_by_two_workers_at_once_is_computed_and_stored_once(pytester):
    pytest.importorskip("xdist")
    from pytest_rtgov.core.schedule import plan_schedule

    pytester.makepyfile(conftest=STAGE_CONFTEST, test_stage=STAGE_TESTS)
    ids = [f"test_stage.py::test_uses[{i}]" for i in range(2)]
    seed = next(s for s in range(100) if all(plan_schedule(s, ids, workers=2).workers))
    session = _start(pytester, "--rtgov", "-n", "2", "--rtgov-schedule", str(seed), parties=2)
    output = session.communicate(timeout=600)[0]
    assert session.returncode == 0, output
    assert len(list((pytester.path / "barrier").iterdir())) == 2, output  # one on each worker
    assert len(list((pytester.path / "computed").iterdir())) == 1, output  # the key's lock
    state = pytester.path / ".rtgov"
    (record,) = _records(state)
    events = [s["stage"] for f in record["fixtures"] for s in f["setups"] if "stage" in s]
    assert sorted(e["outcome"] for e in events) == ["hit", "stored"], events
    assert len({e["key"] for e in events}) == 1
    assert [leaf for leaf in _leaves(state) if leaf["kind"] == "stage"], "stored: in the ledger"
    _verify(pytester, state)
