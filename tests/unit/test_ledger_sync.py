"""``rtgov ledger push|pull`` at the store level, against a shared directory: prefixes
published and extended, forks refused naming both checkpoints, tampering found, the
conditional head write deciding a race, a lost push brought back by ``pull --rebase``.
The same against S3 (moto), and the command line: tests/plugin/test_ledger_sync.py."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, append_session
from pytest_rtgov.store.ledger_pull import pull
from pytest_rtgov.store.ledger_remote import HEAD, open_shared
from pytest_rtgov.store.ledger_sync import ForkError, SyncRefused, push
from pytest_rtgov.store.verify import VerifyFailure, verify_all

SIGNER = generate_signer("ci.example/team")
OTHER = generate_signer("someone.example/else")
TRUST = Trust((SIGNER.verifier(),), (), Path("rtgov.keyring"), required=True)


def leaf(run: str) -> bytes:
    return canonical_json({"format": 1, "kind": "run", "run_id": run})


def session(state: Path, run: str, *, signer=SIGNER, origin: str = "team.example/ledger") -> None:
    """One session's leaves appended to ``state``'s ledger and signed."""
    append_session(
        Ledger(state / "ledger"),
        [leaf(run), leaf(run + "-b")],
        signer=signer,
        origin=origin,
        created_at="2026-11-30T00:00:00Z",
    )


def ledger(state: Path) -> Ledger:
    return Ledger(state / "ledger")


def log_bytes(state: Path) -> bytes:
    return (state / "ledger" / "log").read_bytes()


def verifies(state: Path) -> None:
    verify_all(state, TRUST)


def test_push_to_an_empty_place_then_pull_into_an_empty_ledger(tmp_path):
    shared = open_shared(f"file://{tmp_path / 'shared'}")
    session(tmp_path / "a", "r1")
    pushed = push(ledger(tmp_path / "a"), shared, TRUST)
    assert pushed.status == "pushed" and pushed.shared is None and pushed.local is not None
    names = sorted(p.relative_to(tmp_path / "shared").as_posix()
                   for p in (tmp_path / "shared").rglob("*") if p.is_file())  # fmt: skip
    assert HEAD in names
    assert [n for n in names if n.startswith("logs/")] == [
        f"logs/{3:010d}-{pushed.local.checkpoint.root_hash.hex()}.log"  # genesis + 2
    ]
    assert push(ledger(tmp_path / "a"), shared, TRUST).status == "up to date"

    pulled = pull(ledger(tmp_path / "b"), shared, TRUST)
    assert pulled.status == "pulled" and pulled.local is None
    assert log_bytes(tmp_path / "b") == log_bytes(tmp_path / "a")
    assert pull(ledger(tmp_path / "b"), shared, TRUST).status == "up to date"
    verifies(tmp_path / "b")


def test_runners_take_turns_and_the_log_stays_one_chain(tmp_path):
    shared = open_shared(str(tmp_path / "shared"))  # a plain path is a directory too
    session(tmp_path / "a", "r1")
    push(ledger(tmp_path / "a"), shared, TRUST)
    pull(ledger(tmp_path / "b"), shared, TRUST)
    session(tmp_path / "b", "r2")
    assert push(ledger(tmp_path / "b"), shared, TRUST).status == "pushed"
    # a is behind: its push is refused (pull first), its pull takes b's leaves.
    with pytest.raises(SyncRefused, match=r"has 2 leaves this one .* lacks: `rtgov ledger pull"):
        push(ledger(tmp_path / "a"), shared, TRUST)
    assert pull(ledger(tmp_path / "a"), shared, TRUST).status == "pulled"
    assert log_bytes(tmp_path / "a") == log_bytes(tmp_path / "b")
    session(tmp_path / "a", "r3")
    assert pull(ledger(tmp_path / "a"), shared, TRUST).status == "ahead"
    assert push(ledger(tmp_path / "a"), shared, TRUST).status == "pushed"
    logs = sorted(p.name for p in (tmp_path / "shared" / "logs").iterdir())
    assert len(logs) == 2  # the new log, and the one it replaced (a reader may be on it)
    for state in ("a", "b"):
        verifies(tmp_path / state)


def test_a_fork_is_refused_naming_both_checkpoints(tmp_path):
    shared = open_shared(f"file://{tmp_path / 'shared'}")
    session(tmp_path / "a", "r1")
    session(tmp_path / "b", "r2", origin="elsewhere.example/ledger")  # its own genesis
    push(ledger(tmp_path / "a"), shared, TRUST)
    before = log_bytes(tmp_path / "b")
    for attempt in (push, pull):
        with pytest.raises(ForkError) as caught:
            attempt(ledger(tmp_path / "b"), shared, TRUST)
        text = str(caught.value)
        for state in ("a", "b"):
            latest = ledger(tmp_path / state).latest_checkpoint()
            assert latest is not None
            cp = latest[1]
            assert f"tree size {cp.size}, root {cp.root_hash.hex()}" in text
        assert caught.value.exit_code == ExitCode.HISTORY
    assert log_bytes(tmp_path / "b") == before  # nothing taken
    with pytest.raises(ForkError):  # no common leaf: nothing to rebase onto
        pull(ledger(tmp_path / "b"), shared, TRUST, rebase=SIGNER)


@pytest.mark.parametrize(
    ("damage", "code"),
    [("leaf", ExitCode.LEDGER_FRAME), ("cut", ExitCode.LEDGER_ROOT), ("note", ExitCode.CHECKPOINT)],
)
def test_a_tampered_shared_ledger_is_refused(tmp_path, damage, code):
    shared_dir = tmp_path / "shared"
    shared = open_shared(str(shared_dir))
    session(tmp_path / "a", "r1")
    push(ledger(tmp_path / "a"), shared, TRUST)
    (log,) = (shared_dir / "logs").iterdir()
    data = log.read_bytes()
    if damage == "leaf":
        log.write_bytes(data.replace(b'"r1-b"', b'"r9-b"'))
    elif damage == "cut":
        log.write_bytes(data[: data.rindex(b'{"format"') - 40])
    else:
        head = shared_dir / HEAD
        head.write_bytes(head.read_bytes().replace(b"\n3\n", b"\n2\n"))
    for attempt in (pull, push):
        with pytest.raises(VerifyFailure) as caught:
            attempt(ledger(tmp_path / ("b" if attempt is pull else "a")), shared, TRUST)
        assert caught.value.exit_code == code
        assert str(shared_dir) in str(caught.value)
    assert not (tmp_path / "b" / "ledger" / "checkpoints").exists()


def test_an_untrusted_shared_checkpoint_is_refused(tmp_path):
    shared = open_shared(str(tmp_path / "shared"))
    session(tmp_path / "a", "r1", signer=OTHER)
    other = Trust((OTHER.verifier(),), (), Path("rtgov.keyring"), required=True)
    push(ledger(tmp_path / "a"), shared, other)
    with pytest.raises(VerifyFailure, match="not a trusted signed checkpoint") as caught:
        pull(ledger(tmp_path / "b"), shared, TRUST)
    assert caught.value.exit_code == ExitCode.CHECKPOINT


def test_exactly_one_of_two_pushers_that_read_the_same_head_wins(tmp_path):
    place = open_shared(str(tmp_path / "shared"))
    session(tmp_path / "a", "r1")
    push(ledger(tmp_path / "a"), place, TRUST)
    pull(ledger(tmp_path / "b"), place, TRUST)
    session(tmp_path / "a", "r2")
    session(tmp_path / "b", "r3")
    head = place.read_head()
    real = place.read_head
    place.read_head = lambda: head  # type: ignore[method-assign]  # both read this one
    assert push(ledger(tmp_path / "a"), place, TRUST).status == "pushed"
    with pytest.raises(SyncRefused, match=r"another push replaced .* pull --rebase"):
        push(ledger(tmp_path / "b"), place, TRUST)
    place.read_head = real  # type: ignore[method-assign]
    with pytest.raises(SyncRefused, match="both share their first 3 leaves, then differ") as moved:
        push(ledger(tmp_path / "b"), place, TRUST)  # the head it reads now: moved on
    assert moved.value.exit_code == ExitCode.REFUSED
    with pytest.raises(ForkError, match="Both share their first 3 leaves"):
        pull(ledger(tmp_path / "b"), place, TRUST)
    rebased = pull(ledger(tmp_path / "b"), place, TRUST, rebase=SIGNER)
    assert rebased.status == "rebased" and rebased.local is not None
    assert rebased.local.checkpoint.size == 7  # a's 5, then b's own 2
    assert any((tmp_path / "b" / "ledger" / "rebased").rglob("*.txt"))  # set aside
    assert push(ledger(tmp_path / "b"), place, TRUST).status == "pushed"
    pull(ledger(tmp_path / "a"), place, TRUST)
    assert log_bytes(tmp_path / "a") == log_bytes(tmp_path / "b")
    runs = re.findall(rb'"run_id":"(r\d)"', log_bytes(tmp_path / "a"))
    assert runs == [b"r1", b"r2", b"r3"]
    for state in ("a", "b"):
        verifies(tmp_path / state)


def test_pull_from_nothing_and_push_of_nothing(tmp_path):
    place = open_shared(str(tmp_path / "shared"))
    assert pull(ledger(tmp_path / "b"), place, TRUST).status == "empty"
    assert not (tmp_path / "b" / "ledger").exists()
    with pytest.raises(Exception, match=r"no signed ledger in .*: nothing to push") as caught:
        push(ledger(tmp_path / "b"), place, TRUST)
    assert type(caught.value).__name__ == "NotFoundError"


def test_a_log_replaced_while_fetched_is_fetched_again_and_a_missing_one_named(tmp_path):
    place = open_shared(str(tmp_path / "shared"))
    session(tmp_path / "a", "r1")
    push(ledger(tmp_path / "a"), place, TRUST)
    stale = place.read_head()
    session(tmp_path / "a", "r2")
    push(ledger(tmp_path / "a"), place, TRUST)
    session(tmp_path / "a", "r3")
    push(ledger(tmp_path / "a"), place, TRUST)  # the first log is gone now
    heads = [stale]
    real = place.read_head
    place.read_head = lambda: heads.pop() if heads else real()  # type: ignore[method-assign]
    assert pull(ledger(tmp_path / "b"), place, TRUST).status == "pulled"  # the newest
    assert log_bytes(tmp_path / "b") == log_bytes(tmp_path / "a")
    place.read_head = real  # type: ignore[method-assign]
    for log in (tmp_path / "shared" / "logs").iterdir():
        log.unlink()
    with pytest.raises(VerifyFailure, match=r"missing, but .* names it") as caught:
        pull(ledger(tmp_path / "c"), place, TRUST)
    assert caught.value.exit_code == ExitCode.LEDGER_ROOT


def test_pull_refuses_unsigned_local_leaves_and_push_waits_for_the_lock(tmp_path, monkeypatch):
    import portalocker

    from pytest_rtgov.store.ledger import LedgerLockTimeout

    place = open_shared(str(tmp_path / "shared"))
    session(tmp_path / "a", "r1")
    push(ledger(tmp_path / "a"), place, TRUST)
    with ledger(tmp_path / "a").append() as appender:  # a session killed before its checkpoint
        appender.append(leaf("r2"))
    with pytest.raises(SyncRefused, match=r"leaves 3\.\.3 are signed by no checkpoint"):
        pull(ledger(tmp_path / "a"), place, TRUST)

    monkeypatch.setenv("RTGOV_LEDGER_TIMEOUT", "0")
    with portalocker.Lock(tmp_path / "shared" / "push.lock", mode="a"):
        with pytest.raises(LedgerLockTimeout, match="another push held the lock"):
            place.commit_head(b"note\n", place.read_head())
