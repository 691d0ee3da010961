"""The history ``rtgov quarantine propose`` reads (store/quarantine_history.py): real run
records written and logged in a state directory, read back in ledger order, edited or
unlogged ones left out; the proposals made from them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.quarantine_propose import CLEAN, FAIL, RETRY, propose, run_facts
from pytest_rtgov.core.records import Rerun, RunRecord, TestEntry
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.logged_run import write_and_log
from pytest_rtgov.store.quarantine_history import load_history
from pytest_rtgov.store.runs import RunStore

RECORD = RunRecord.from_dict(
    json.loads((Path(__file__).parents[2] / "fixtures/records/run-v1.json").read_text())
)
SIGNER = generate_signer("test.example/propose")
FLAKY, BROKEN, STEADY, ODD = "t.py::test_flaky", "t.py::test_broken", "t.py::test_ok", "t.py::odd"


def _test(nodeid: str, outcome: str, *, rerun: bool = False) -> TestEntry:
    reruns = (Rerun("failed"),) if rerun else ()
    return TestEntry(nodeid, outcome, "main", reruns=reruns)


def _record(r: int, outcomes: dict[str, Any], gates: list[dict[str, Any]],
            numpy: str = "2.4.6") -> RunRecord:
    tests = tuple(
        _test(nodeid, "passed", rerun=True) if o == "rerun" else _test(nodeid, o)
        for nodeid, o in sorted(outcomes.items())
    )
    return dataclasses.replace(
        RECORD, run_id=f"20261130T{r // 60:04d}{r % 60:02d}Z-{r:06x}", tests=tests,
        fixtures=(), environment={**RECORD.environment, "numpy": numpy},
        gate_results=tuple(gates),
    )


def _log(state: Path, record: RunRecord, signer: Any = SIGNER,
         origin: str = "test.example/propose") -> None:
    store = RunStore(state)

    def write(rec: RunRecord) -> tuple[Path, bytes]:
        encoded = rec.canonical_json()
        return store.write(rec, encoded=encoded), encoded

    logged = write_and_log(Ledger(state / "ledger"), record, None, write,
                           signer=lambda: signer, origin=origin)
    assert logged.error is None


def _history(state: Path, runs: int = 12, *, gates: bool = True, signer: Any = SIGNER,
             origin: str = "test.example/propose") -> list[RunRecord]:
    records = []
    for r in range(runs):
        flaky = "failed" if r % 4 == 1 else ("rerun" if r % 4 == 3 else "passed")
        outcomes = {FLAKY: flaky, BROKEN: "failed", STEADY: "passed",
                    ODD: "failed" if r % 5 == 2 else "passed"}
        gate = {"gate": "step_time", "subject": STEADY, "metric": "wall_time", "rule": "ab",
                "status": "unconfirmed" if r % 3 == 0 else "pass"}
        numpy = "2.5.0" if r % 5 == 2 else "2.4.6"
        records.append(_record(r, outcomes, [gate] if gates else [], numpy=numpy))
    for record in records:
        _log(state, record, signer, origin)
    return records


def test_the_history_is_the_covered_records_in_ledger_order(tmp_path: Path) -> None:
    records = _history(tmp_path)
    history = load_history(tmp_path, runs=10)
    assert [r.run_id for r in history.runs] == [r.run_id for r in records[-10:]]
    newest = history.runs[-1]
    assert newest.digest.startswith("sha256:") and newest.environment["numpy"] == "2.4.6"
    assert newest.tests == {FLAKY: RETRY, BROKEN: FAIL, STEADY: CLEAN, ODD: CLEAN}
    assert newest.gates == {("step_time", STEADY): CLEAN}
    assert history.runs[-3].gates == {("step_time", STEADY): RETRY}  # run 9


def test_an_edited_or_unlogged_record_is_left_out_and_said(tmp_path: Path) -> None:
    records = _history(tmp_path, runs=6)
    store = RunStore(tmp_path)
    edited = store.path_for(records[2].run_id)
    data = json.loads(edited.read_text())
    data["tests"][0]["outcome"] = "passed"
    edited.write_text(json.dumps(data))
    store.write(_record(99, {FLAKY: "failed"}, []))  # never logged: no verdict leaf
    history = load_history(tmp_path, runs=10)
    assert [r.run_id for r in history.runs] == [r.run_id for i, r in enumerate(records) if i != 2]
    assert history.skipped == (f"{edited}: EDITED (differs from its verdict leaf)",)


def test_proposals_from_real_records(tmp_path: Path) -> None:
    _history(tmp_path)
    found = propose(load_history(tmp_path, runs=30).runs)
    assert [p.subject for p in found.adds] == [f"gate:step_time:{STEADY}", FLAKY]
    flaky = found.adds[1].estimate
    assert (flaky.runs, flaky.failures, flaky.retries) == (12, 3, 3)
    assert len(flaky.evidence) == 6 and all(d.startswith("sha256:") for d in flaky.evidence)
    why = {e.subject: (e.reason, e.field) for e in found.excluded}
    assert why == {BROKEN: ("broken", ""), ODD: ("environment", "numpy")}


def test_a_record_with_no_ledger_gives_no_history(tmp_path: Path) -> None:
    RunStore(tmp_path).write(_record(1, {FLAKY: "failed"}, []))
    assert load_history(tmp_path, runs=10).runs == ()


@pytest.mark.parametrize(("outcome", "reruns", "seen"), [
    ("passed", (), CLEAN), ("passed", ("failed",), RETRY), ("passed", ("error",), RETRY),
    ("failed", ("failed",), FAIL), ("error", (), FAIL), ("skipped", (), None),
])
def test_run_facts_of_each_outcome(outcome: str, reruns: tuple[str, ...], seen: str | None) -> None:
    test = TestEntry("t.py::x", outcome, "main", reruns=tuple(Rerun(o) for o in reruns))
    facts = run_facts(dataclasses.replace(RECORD, tests=(test,)))
    assert facts.tests.get("t.py::x") == seen
