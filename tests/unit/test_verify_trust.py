"""Trust gaps closed in the ledger and ``rtgov verify`` (issue 11): coverage of run
records and artifacts, every leaf's format, checkpoint numbering, the writer's lock."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pytest_rtgov.cli import main
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.keys import format_verifier_key, generate_signer
from pytest_rtgov.core.ledger_records import run_leaves
from pytest_rtgov.core.records import (
    FixtureEntry,
    FixtureSetup,
    Metric,
    RunRecord,
    Sample,
    TestEntry,
)
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.artifacts import ArtifactStore
from pytest_rtgov.store.coverage import covered_runs
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import (
    Ledger,
    LedgerLockTimeout,
    append_session,
    encode_frame,
    lock_timeout,
)
from pytest_rtgov.store.runs import RunStore
from pytest_rtgov.store.verify import (
    EXIT_CHECKPOINT,
    EXIT_LEAF,
    EXIT_ROOT,
    EXIT_SEAL,
    VerifyFailure,
    verify_all,
)

SIGNER = generate_signer("test.example/trust")


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


def test_covered_runs_ignores_unsigned_verdicts_and_raises_on_a_damaged_frame(tmp_path: Path):
    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    log = tmp_path / "ledger" / "log"
    with open(log, "ab") as fh:  # a verdict-looking leaf without a run id
        fh.write(encode_frame(b'{"exit_status":0,"kind":"verdict"}'))
    # Not signed by any checkpoint: it vouches for nothing, and is not even read.
    assert covered_runs(tmp_path) == {"r1": "sha256:" + "a" * 64}
    data = bytearray(log.read_bytes())
    data[-3] ^= 0x01  # a flipped bit in the last payload
    log.write_bytes(bytes(data))
    with pytest.raises(RtgovError, match="does not match its leaf hash"):
        covered_runs(tmp_path)


# -- a realistic state directory: run records, their leaves, artifacts ---------------------


def trust(required: bool = False) -> Trust:
    return Trust(
        keyring=(SIGNER.verifier(),),
        local=(),
        keyring_path=Path("rtgov.keyring"),
        required=required,
    )


def record(run_id: str, artifact: str | None = None) -> RunRecord:
    sample = Sample(wall_ns=1000, cpu_ns=900, peak_memory_bytes=None)
    metrics = (Metric(name=f"artifact:{artifact[0]}", value=artifact[1]),) if artifact else ()
    setup = FixtureSetup("main", "t.py::test_a", "passed", sample, metrics=metrics)
    return RunRecord(
        run_id=run_id,
        started_at="2026-11-22T00:00:00Z",
        ended_at="2026-11-22T00:01:00Z",
        mode="record",
        pytest_args=("-q",),
        memory_mode="off",
        backend="numpy",
        workers=("main",),
        environment={"python": "3.11"},
        tests=(
            TestEntry(nodeid="t.py::test_a", outcome="passed", worker="main", samples=(sample,)),
        ),
        fixtures=(FixtureEntry(nodeid="", name="model", scope="session", setups=(setup,)),),
    )


def add_run(state: Path, run_id: str, *, artifact: bool = False) -> RunRecord:
    """A session as the plugin ends it: artifact saved, record written, leaves appended."""
    saved = None
    if artifact:
        store = ArtifactStore(
            state / "artifacts" / run_id / "main", SIGNER, trust(), run_id=run_id, worker="main"
        )
        _, digest = store.save("weights", {"w": np.arange(4.0)})
        saved = ("weights", digest)
    rec = record(run_id, saved)
    RunStore(state).write(rec)
    session(state, run_leaves(rec))
    return rec


RUN1 = "20261122T000000Z-aaaaaa"
RUN2 = "20261122T000100Z-bbbbbb"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    add_run(tmp_path, RUN1, artifact=True)
    add_run(tmp_path, RUN2)
    report = verify_all(tmp_path, trust())
    assert report.warnings == [] and report.records_checked == 2 and report.seals_checked == 1
    return tmp_path


def fails(state: Path, code: int, *fragments: str) -> VerifyFailure:
    with pytest.raises(VerifyFailure) as info:
        verify_all(state, trust())
    message = str(info.value)
    assert info.value.exit_code == code, message
    for fragment in fragments:
        assert fragment in message, message
    return info.value


# -- 1. the log removed, --dir not a state directory --------------------------------------


def test_a_removed_log_with_checkpoints_left_fails_naming_the_newest_checkpoint(state: Path):
    (state / "ledger" / "log").unlink()
    fails(state, EXIT_ROOT, str(state / "ledger" / "log"), "0000000002.txt", "removed")


def test_an_empty_state_directory_is_only_a_warning(tmp_path: Path):
    assert "no ledger yet" in verify_all(tmp_path, trust()).warnings[0]


def cli_verify(state: Path, tmp_path: Path, monkeypatch) -> int:
    monkeypatch.delenv("CI", raising=False)
    keyring = tmp_path / "keyring"
    keyring.write_text(format_verifier_key(SIGNER.verifier()) + "\n")
    gates = tmp_path / "no-gates.toml"
    return main(["--dir", str(state), "verify", "--keyring", str(keyring), "--gates", str(gates)])


def test_verify_of_a_missing_directory_exits_3(tmp_path: Path, monkeypatch, capsys):
    assert cli_verify(tmp_path / "nowhere", tmp_path, monkeypatch) == 3
    err = capsys.readouterr().err
    assert str(tmp_path / "nowhere") in err and "no state directory" in err


def test_verify_of_a_file_instead_of_a_directory_exits_4(tmp_path: Path, monkeypatch, capsys):
    path = tmp_path / "file"
    path.write_text("x")
    assert cli_verify(path, tmp_path, monkeypatch) == 4
    assert "not a directory" in capsys.readouterr().err


def test_the_cli_verifies_an_intact_state(state: Path, tmp_path: Path, monkeypatch, capsys):
    assert cli_verify(state, tmp_path, monkeypatch) == 0
    assert "2 run record file(s) match the ledger" in capsys.readouterr().out


# -- 2. every leaf's format -------------------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        b'{"kind":"test","run_id":"x","nodeid":"a"}',  # keys not sorted
        b'{"kind":"nonsense"}',
        b"[1,2]",
        b'{"kind":"test"}',  # no run id
        b'{"kind":"test","nodeid":"a","run_id":7}',
        b"\xff\xfe",
    ],
)
def test_a_signed_leaf_of_any_kind_must_be_valid(tmp_path: Path, payload: bytes):
    session(tmp_path, [payload])  # signed by the key holder: the root matches
    failure = fails(tmp_path, EXIT_LEAF, "leaf 1 at byte 147")
    assert "ledger" in failure.where


def test_a_second_genesis_leaf_is_invalid(tmp_path: Path):
    session(
        tmp_path,
        [canonical_json({"kind": "ledger", "format": 1, "origin": "o", "created_at": "t"})],
    )
    fails(tmp_path, EXIT_LEAF, "leaf 1 at byte 147", "only leaf 0")


# -- 3. run records the ledger does not vouch for -----------------------------------------


def test_a_deleted_run_record_fails(state: Path):
    (state / "runs" / f"{RUN1}.json").unlink()
    fails(state, EXIT_LEAF, f"{RUN1}.json", "run record missing", "verdict leaf 4 names it")


def test_an_orphaned_run_record_fails(state: Path):
    shutil.copy(state / "runs" / f"{RUN1}.json", state / "runs" / "20261122T000200Z-cccccc.json")
    fails(state, EXIT_LEAF, "20261122T000200Z-cccccc.json", "orphaned run record", "crashed")


# -- 4. artifacts against the digests in the ledger ---------------------------------------


def artifact(state: Path) -> Path:
    return state / "artifacts" / RUN1 / "main" / "weights.npz"


def test_a_deleted_artifact_envelope_fails(state: Path):
    Path(str(artifact(state)) + ".dsse.json").unlink()
    fails(state, EXIT_SEAL, "weights.npz", "leaf 3")


def test_a_deleted_artifact_fails(state: Path):
    artifact(state).unlink()
    fails(state, EXIT_SEAL, "weights.npz", "leaf 3", "missing")


def test_a_deleted_artifact_directory_fails(state: Path):
    shutil.rmtree(state / "artifacts" / RUN1)
    fails(state, EXIT_SEAL, "weights.npz", "leaf 3", "missing")


def test_an_artifact_resealed_with_other_bytes_fails(state: Path):
    path = artifact(state)
    ArtifactStore(path.parent, SIGNER, trust(), run_id=RUN1, worker="main").save(
        "weights", {"w": np.arange(5.0)}
    )
    fails(state, EXIT_SEAL, "weights.npz", "leaf 3", "sha256")


def test_an_artifact_no_leaf_names_fails(state: Path):
    store = ArtifactStore(
        state / "artifacts" / RUN2 / "main", SIGNER, trust(), run_id=RUN2, worker="main"
    )
    store.save("extra", {"w": np.arange(3.0)})
    fails(state, EXIT_SEAL, "extra.npz", "no ledger leaf names it")


# -- 5. checkpoint numbering --------------------------------------------------------------


def checkpoints(state: Path) -> list[Path]:
    return sorted((state / "ledger" / "checkpoints").glob("*.txt"))


def test_a_checkpoint_deleted_from_the_middle_is_a_gap(state: Path):
    add_run(state, "20261122T000200Z-cccccc")
    checkpoints(state)[1].unlink()
    fails(state, EXIT_CHECKPOINT, "0000000003.txt", "0000000002.txt is missing")


def test_a_renumbered_checkpoint_is_a_gap(state: Path):
    last = checkpoints(state)[-1]
    last.rename(last.with_name("0000000007.txt"))
    fails(state, EXIT_CHECKPOINT, "0000000007.txt", "0000000002.txt is missing")


def test_a_duplicated_checkpoint_fails(state: Path):
    last = checkpoints(state)[-1]
    shutil.copy(last, last.with_name("0000000003.txt"))
    fails(state, EXIT_CHECKPOINT, "0000000003.txt", "same checkpoint as 0000000002.txt")


def test_a_badly_named_checkpoint_fails(state: Path):
    last = checkpoints(state)[-1]
    shutil.copy(last, last.with_name("3.txt"))
    fails(state, EXIT_CHECKPOINT, "3.txt", "NNNNNNNNNN.txt")


# -- 6. a writer that holds the lock ------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from pytest_rtgov.store.ledger import Ledger
with Ledger(Path(sys.argv[1])).append():
    print("locked", flush=True)
    time.sleep(60)
"""


def test_a_held_lock_is_waited_for_naming_the_holder_then_given_up(tmp_path: Path):
    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(tmp_path / "ledger")], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        messages: list[str] = []
        with pytest.raises(LedgerLockTimeout, match=rf"gave up after 0.2 s .* pid {holder.pid} "):
            append_session(
                Ledger(tmp_path / "ledger"),
                [verdict("r2", "sha256:" + "b" * 64)],
                signer=SIGNER,
                origin="test.example/log",
                created_at="2026-11-22T00:00:00Z",
                lock_timeout=0.2,
                on_wait=messages.append,
            )
        assert len(messages) == 1 and f"held by pid {holder.pid} since 20" in messages[0]
    finally:
        holder.kill()
        holder.wait()
    assert covered_runs(tmp_path) == {"r1": "sha256:" + "a" * 64}  # nothing appended


def test_the_lock_timeout_comes_from_the_option_then_the_environment():
    assert lock_timeout(None, {}) == 60.0
    assert lock_timeout(None, {"RTGOV_LEDGER_TIMEOUT": "2.5"}) == 2.5
    assert lock_timeout(0, {"RTGOV_LEDGER_TIMEOUT": "2.5"}) == 0.0
    with pytest.raises(RtgovError, match="RTGOV_LEDGER_TIMEOUT='soon': expected a number"):
        lock_timeout(None, {"RTGOV_LEDGER_TIMEOUT": "soon"})
    with pytest.raises(RtgovError, match="expected seconds from 0"):
        lock_timeout(-1.0, {})


# -- 2b. writers never sign an invalid frame ------------------------------------------------


def test_the_writer_sets_unsigned_invalid_frames_aside_and_records_it(tmp_path: Path):
    import json

    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    log = tmp_path / "ledger" / "log"
    good = canonical_json({"kind": "quarantine", "action": "add", "subject": "s", "entry": "e"})
    cut = log.stat().st_size
    with open(log, "ab") as fh:
        fh.write(encode_frame(good))  # leaf 2: valid, uncovered: kept and signed
        fh.write(encode_frame(b'{"kind":"verdict"}'))  # leaf 3: invalid
        fh.write(encode_frame(good))  # after it: set aside too
        fh.write(b"\x00\x00")  # and a torn tail
    tail = log.read_bytes()[cut + len(encode_frame(good)) :]
    result = append_session(
        Ledger(tmp_path / "ledger"),
        [verdict("r2", "sha256:" + "b" * 64)],
        signer=SIGNER,
        origin="test.example/log",
        created_at="2026-11-22T00:00:00Z",
    )
    assert result is not None and result.invalid is not None
    assert result.invalid.index == 3 and result.invalid.path.read_bytes() == tail
    assert "leaf 3 at byte" in result.invalid.describe()
    frames = list(Ledger(tmp_path / "ledger").frames())
    recovery = json.loads(frames[3].payload)
    assert recovery["kind"] == "recovery" and recovery["uncovered"] == [2, 3]
    assert recovery["invalid"]["leaf"] == 3 and recovery["invalid"]["bytes"] == len(tail)
    assert frames[2].payload == good and len(frames) == 5
    assert covered_runs(tmp_path) == {"r1": "sha256:" + "a" * 64, "r2": "sha256:" + "b" * 64}


def test_a_temporary_left_among_the_artifacts_is_only_a_warning(state: Path):
    temporary = artifact(state).parent / ".weights.npz.4242.abcdefgh.rtgov-tmp"
    temporary.write_bytes(b"half")
    warnings = verify_all(state, trust()).warnings
    assert len(warnings) == 1 and str(temporary) in warnings[0]


def test_a_merged_runs_artifacts_are_the_shards_and_not_claimed_again(state: Path):
    import dataclasses

    shard = RunStore(state).read(RUN1)
    fixture = shard.fixtures[0]
    setup = dataclasses.replace(fixture.setups[0], worker=f"{RUN1}/main")
    merged = dataclasses.replace(
        shard,
        run_id="20261122T000300Z-dddddd",
        fixtures=(dataclasses.replace(fixture, setups=(setup,)),),
    )
    RunStore(state).write(merged)
    session(state, run_leaves(merged))
    assert verify_all(state, trust()).records_checked == 3
    shutil.rmtree(state / "artifacts" / RUN1)  # the shard's artifact, claimed by its leaves
    fails(state, EXIT_SEAL, "weights.npz", "missing")


def test_temporaries_of_interrupted_writes_are_reported_not_verified(state: Path):
    """A writer killed between mkstemp and rename leaves ``.NAME.PID.XXXXXXXX.rtgov-tmp``;
    once its writer is gone and it is an hour old, verify names it (a warning)."""
    import os

    dead_pid = 2**22 + 12345  # above the default pid_max: no living process has it
    left = state / "runs" / f".{RUN2}.json.{dead_pid}.abcd1234.rtgov-tmp"
    left.write_bytes(b"{half a rec")
    old = left.stat().st_mtime - 7200
    os.utime(left, (old, old))
    warnings = verify_all(state, trust()).warnings
    assert any(str(left) in w and "interrupted write" in w for w in warnings), warnings


def test_recover_keeps_the_artifacts_of_a_session_killed_during_its_append(state: Path):
    """Killed after its artifact and test leaves, before its verdict leaf: recovery signs
    the leaves, so the artifacts they name stay; only the record (no verdict) moves."""
    from pytest_rtgov.store.coverage import move_orphans

    run_id = "20261122T000200Z-cccccc"
    store = ArtifactStore(
        state / "artifacts" / run_id / "main", SIGNER, trust(), run_id=run_id, worker="main"
    )
    _, digest = store.save("weights", {"w": np.arange(3.0)})
    rec = record(run_id, ("weights", digest))
    RunStore(state).write(rec)
    session(state, list(run_leaves(rec))[:-1])  # as `rtgov ledger recover` signs them
    moved = {source for source, _ in move_orphans(state)}
    assert moved == {state / "runs" / f"{run_id}.json"}
    verify_all(state, trust())  # the artifact its leaves name is still there and sealed


def test_a_verdict_leaf_no_checkpoint_signs_covers_nothing(tmp_path: Path):
    """A forger appends a run's leaves without a checkpoint: commands must not take it."""
    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    with open(tmp_path / "ledger" / "log", "ab") as fh:
        fh.write(encode_frame(verdict("forged", "sha256:" + "f" * 64)))
    assert covered_runs(tmp_path) == {"r1": "sha256:" + "a" * 64}


def test_where_signatures_are_required_a_writer_sets_unsigned_leaves_aside(tmp_path: Path):
    session(tmp_path, [verdict("r1", "sha256:" + "a" * 64)])
    forged = verdict("forged", "sha256:" + "f" * 64)
    with open(tmp_path / "ledger" / "log", "ab") as fh:
        fh.write(encode_frame(forged))
    result = append_session(
        Ledger(tmp_path / "ledger"),
        [verdict("r2", "sha256:" + "b" * 64)],
        signer=SIGNER,
        origin="test.example/log",
        created_at="2026-11-22T00:02:00Z",
        sign_uncovered=False,
    )
    assert result is not None and result.invalid is not None
    assert result.invalid.path.parent.name == "unsigned"
    assert result.invalid.path.read_bytes() == encode_frame(forged)
    assert "signatures are required" in result.invalid.reason
    assert set(covered_runs(tmp_path)) == {"r1", "r2"}  # the forged one was never signed
    assert encode_frame(forged) not in (tmp_path / "ledger" / "log").read_bytes()


@pytest.mark.parametrize("raw", ["inf", "1e400", "nan", "-1", "86401", "soon"])
def test_a_lock_timeout_without_end_is_refused(raw: str):
    with pytest.raises(RtgovError, match="expected a number of seconds from 0 to 86400"):
        lock_timeout(environ={"RTGOV_LEDGER_TIMEOUT": raw})
    if raw not in ("soon",):
        with pytest.raises(RtgovError, match="expected seconds from 0 to 86400"):
            lock_timeout(float(raw))


def test_since_that_is_not_a_checkpoint_file_fails_fast(state: Path, tmp_path: Path):
    """``--since /dev/zero`` read without bound until the process was killed."""
    with pytest.raises(VerifyFailure, match="not a regular file") as info:
        verify_all(state, trust(), since=Path("/dev/zero"))
    assert info.value.exit_code == 13
    big = tmp_path / "big.txt"
    big.write_bytes(b"x" * 70_000)
    with pytest.raises(VerifyFailure, match="larger than 65536 bytes"):
        verify_all(state, trust(), since=big)


@pytest.mark.parametrize("value", ["nan", "-5", "1e400", "lots"])
def test_compare_refuses_a_threshold_that_is_no_percentage(value: str, capsys):
    with pytest.raises(SystemExit) as info:
        main(["compare", "a", "b", "--threshold-pct", value])
    assert info.value.code == 2
    assert "expected a percentage from 0 to 10000" in capsys.readouterr().err
