"""Trust gaps closed in the ledger and ``rtgov verify`` (issue 11): coverage of run
records and artifacts, every leaf's format, checkpoint numbering, the writer's lock."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_rtgov.core import note
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.coverage import covered_runs
from pytest_rtgov.store.ledger import Ledger, append_session, encode_frame

SIGNER = note.generate_signer("test.example/trust")


def verdict(run_id: str, digest: str) -> bytes:
    return canonical_json(
        {
            "kind": "verdict",
            "run_id": run_id,
            "exit_status": 0,
            "verdict": "pass",
            "record_sha256": digest,
        }
    )


def session(state: Path, leaves: list[bytes], at: str = "2026-11-22T00:00:00Z") -> None:
    append_session(
        Ledger(state / "ledger"),
        leaves,
        signer=SIGNER,
        origin="test.example/log",
        created_at=at,
    )


def test_covered_runs_maps_each_verdict_leafs_run_to_its_record_digest(tmp_path: Path):
    assert covered_runs(tmp_path) == {}
    test_leaf = canonical_json({"kind": "test", "run_id": "r1", "nodeid": "t::a"})
    session(tmp_path, [test_leaf, verdict("r1", "sha256:" + "a" * 64)])
    session(tmp_path, [verdict("r2", "sha256:" + "b" * 64)])
    assert covered_runs(tmp_path) == {"r1": "sha256:" + "a" * 64, "r2": "sha256:" + "b" * 64}


def test_covered_runs_raises_a_clear_error_on_a_damaged_or_invalid_verdict_leaf(tmp_path: Path):
    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    log = tmp_path / "ledger" / "log"
    with open(log, "ab") as fh:  # a verdict-looking leaf without a run id
        fh.write(encode_frame(b'{"exit_status":0,"kind":"verdict"}'))
    with pytest.raises(RtgovError, match=r"leaf 2 at byte \d+: expected a verdict leaf"):
        covered_runs(tmp_path)
    data = bytearray(log.read_bytes())
    data[-3] ^= 0x01  # a flipped bit in the last payload
    log.write_bytes(bytes(data))
    with pytest.raises(RtgovError, match="does not match its leaf hash"):
        covered_runs(tmp_path)
