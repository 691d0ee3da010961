"""A run record written under the ledger's lock and logged (store/logged_run.py): the
record says the exit status the ledger's failure sets, for a session and ``rtgov merge``."""

from __future__ import annotations

import dataclasses
import errno
import json
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.constants import EXIT_INTEGRITY
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import GateResult, Verdict, decide
from pytest_rtgov.store.ledger import Ledger, LedgerAppender
from pytest_rtgov.store.logged_run import ledger_failure, write_and_log
from pytest_rtgov.store.runs import RunStore

RECORD = RunRecord.from_dict(
    json.loads((Path(__file__).parents[2] / "fixtures/records/run-v1.json").read_text())
)
SIGNER = generate_signer("test.example/logged")
BREACH = GateResult("g", "t.py::x", "wall_time", "breach", "max 1 s")


def _writer(store: RunStore, written: list[RunRecord]):
    def write(record: RunRecord) -> tuple[Path, bytes]:
        written.append(record)
        encoded = record.canonical_json()
        return store.write(record, encoded=encoded), encoded

    return write


def test_a_verdict_stamped_on_a_record_reads_back_from_it() -> None:
    verdict = decide([BREACH], tests_exit_status=0, notes=["a path \udcff"])
    stamped = verdict.stamp(RECORD)
    assert stamped.exit_status == 6
    assert stamped.verdict["notes"] == ["a path \\udcff"]  # escaped: UTF-8 on disk
    assert Verdict.of_record(stamped) == dataclasses.replace(verdict, notes=("a path \\udcff",))


def test_a_ledger_failure_is_exit_7_gated_or_not() -> None:
    record, verdict = ledger_failure(RECORD, None, "disk full")
    assert (record.exit_status, verdict) == (EXIT_INTEGRITY, None)
    passed = decide([], tests_exit_status=0)
    record, verdict = ledger_failure(passed.stamp(RECORD), passed, "disk full")
    assert verdict is not None and verdict.status == "error"
    assert record.exit_status == record.verdict["exit_status"] == EXIT_INTEGRITY
    assert record.verdict["notes"] == ["ledger not appended: disk full"]


def test_a_logged_run_is_in_the_ledger(tmp_path: Path) -> None:
    store, written = RunStore(tmp_path), []
    logged = write_and_log(
        Ledger(tmp_path / "ledger"), RECORD, None, _writer(store, written),
        signer=lambda: SIGNER, origin="test.example/logged",
    )
    assert logged.error is None and logged.result is not None and written == [RECORD]
    assert logged.path == store.path_for(RECORD.run_id)
    assert RECORD.run_id.encode() in (tmp_path / "ledger" / "log").read_bytes()


def test_a_ledger_that_cannot_be_opened_is_decided_before_the_record_is_written(
    tmp_path: Path,
) -> None:
    (tmp_path / "ledger" / "log").mkdir(parents=True)  # not a file: the ledger fails
    store, written, heard = RunStore(tmp_path), [], []
    verdict = decide([], tests_exit_status=0)
    logged = write_and_log(
        Ledger(tmp_path / "ledger"), verdict.stamp(RECORD), verdict, _writer(store, written),
        signer=lambda: SIGNER, origin="test.example/logged", on_failure=heard.append,
    )
    assert logged.error and not logged.rewritten
    assert [(h.error, h.record.exit_status) for h in heard] == [(logged.error, EXIT_INTEGRITY)]
    assert len(written) == 1  # written once, already saying 7
    on_disk = json.loads(store.path_for(RECORD.run_id).read_text())
    assert on_disk["exit_status"] == EXIT_INTEGRITY
    assert on_disk["verdict"]["status"] == "error"


def test_an_append_that_fails_after_the_write_rewrites_the_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(self: LedgerAppender, note: str) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(LedgerAppender, "write_checkpoint", full)
    store, written = RunStore(tmp_path), []
    logged = write_and_log(
        Ledger(tmp_path / "ledger"), RECORD, None, _writer(store, written),
        signer=lambda: SIGNER, origin="test.example/logged",
    )
    assert logged.rewritten and "No space left" in (logged.error or "")
    assert [r.exit_status for r in written] == [RECORD.exit_status, EXIT_INTEGRITY]
    assert json.loads(store.path_for(RECORD.run_id).read_text())["exit_status"] == 7
    assert RECORD.run_id.encode() not in (tmp_path / "ledger" / "log").read_bytes()


def test_a_record_that_cannot_be_written_propagates_with_nothing_appended(
    tmp_path: Path,
) -> None:
    def broken(record: RunRecord) -> tuple[Path, bytes]:
        raise OSError(errno.EIO, "Input/output error")

    with pytest.raises(OSError, match="Input/output error"):
        write_and_log(
            Ledger(tmp_path / "ledger"), RECORD, None, broken,
            signer=lambda: SIGNER, origin="test.example/logged",
        )
    assert RECORD.run_id.encode() not in (tmp_path / "ledger" / "log").read_bytes()


def test_a_key_that_fails_to_load_when_it_would_sign_is_a_ledger_failure(tmp_path: Path) -> None:
    from pytest_rtgov.store.keys import KeyFileError

    def forged() -> Any:
        raise KeyFileError("forged.key: key id for 'ci.example/gates' is 1234, got 5678")

    store, written = RunStore(tmp_path), []
    logged = write_and_log(
        Ledger(tmp_path / "ledger"), RECORD, None, _writer(store, written),
        signer=forged, origin="test.example/logged",
    )
    assert "key id" in (logged.error or "") and not logged.rewritten
    assert [r.exit_status for r in written] == [EXIT_INTEGRITY]
