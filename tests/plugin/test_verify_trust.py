"""Issue 11 end to end: invalid frames are never signed, a stopped writer does not hang
the next session, orphaned run records are reported and moved aside."""

from __future__ import annotations

import contextlib
import subprocess
import sys

from pytest_rtgov.store.ledger import encode_frame
from pytest_rtgov.store.verify import EXIT_LEAF
from tests.plugin._cli import cli

SUITE = """
def test_one(rtgov):
    rtgov.record("val_accuracy", 0.95, higher_is_better=True)
"""



def test_recover_sets_an_invalid_frame_aside_and_later_sessions_still_work(pytester, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    ledger = pytester.path / ".rtgov" / "ledger"
    size = (ledger / "log").stat().st_size
    with open(ledger / "log", "ab") as fh:  # complete frames, uncovered: one invalid
        fh.write(encode_frame(b'{"action":"add","entry":"e","kind":"quarantine","subject":"s"}'))
        fh.write(encode_frame(b'{"kind":"test","nodeid":"x"}'))
        fh.write(encode_frame(b'{"action":"add","entry":"e","kind":"quarantine","subject":"s"}'))
    capsys.readouterr()
    assert cli(pytester, "ledger", "recover") == 0
    captured = capsys.readouterr()
    assert "not a valid leaf" in captured.err and "set aside" in captured.err
    invalid = list((ledger / "invalid").iterdir())
    assert len(invalid) == 1 and invalid[0].read_bytes().startswith(
        encode_frame(b'{"kind":"test","nodeid":"x"}')
    )
    assert (ledger / "log").stat().st_size > size  # the valid frame and a recovery leaf
    assert cli(pytester, "verify") == 0
    result = pytester.runpytest("--rtgov")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    assert cli(pytester, "verify") == 0


def test_the_session_writer_sets_an_invalid_frame_aside_too(pytester, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    with open(pytester.path / ".rtgov" / "ledger" / "log", "ab") as fh:
        fh.write(encode_frame(b"not json"))
    result = pytester.runpytest("--rtgov")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert len(list((pytester.path / ".rtgov" / "ledger" / "invalid").iterdir())) == 1
    capsys.readouterr()
    assert cli(pytester, "verify") == 0


def test_an_orphaned_run_record_fails_verify_until_recover_moves_it_aside(pytester, capsys):
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    runs = pytester.path / ".rtgov" / "runs"
    record = next(runs.glob("*.json"))
    orphan = runs / "20000101T000000Z-0a0a0a.json"
    orphan.write_bytes(record.read_bytes())
    capsys.readouterr()
    assert cli(pytester, "verify") == EXIT_LEAF
    assert "orphaned run record" in capsys.readouterr().err
    assert cli(pytester, "ledger", "recover") == 0
    assert "orphaned" in capsys.readouterr().out
    assert not orphan.exists()
    assert (pytester.path / ".rtgov" / "orphaned" / "runs" / orphan.name).is_file()
    assert cli(pytester, "verify") == 0


HOLDER = """
import fcntl, sys, time
with open(sys.argv[1], "a+b") as fh:
    fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
    print("locked", flush=True)
    time.sleep(120)
"""


@contextlib.contextmanager
def lock_held_by_another_process(pytester):
    """A first session's state, and a process that holds its ledger lock until the end."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.runpytest("--rtgov").assert_outcomes(passed=1)
    lock = pytester.path / ".rtgov" / "ledger" / "log.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "locked\n"
        yield
    finally:
        holder.kill()
        holder.wait()


def test_a_writer_holding_the_lock_makes_the_next_session_give_up_with_exit_7(pytester):
    with lock_held_by_another_process(pytester):
        result = pytester.runpytest("--rtgov", "--rtgov-ledger-timeout", "1")
        assert result.ret == 7
        result.stderr.fnmatch_lines(
            ["*waiting for the ledger lock, held by *", "*ledger not appended*log.lock*1*"]
        )
        assert len(list((pytester.path / ".rtgov" / "runs").glob("*.json"))) == 2


def test_recover_gives_up_on_a_held_lock_with_a_message(pytester, capsys, monkeypatch):
    with lock_held_by_another_process(pytester):
        monkeypatch.setenv("RTGOV_LEDGER_TIMEOUT", "1")
        capsys.readouterr()
        assert cli(pytester, "ledger", "recover") == 7
        err = capsys.readouterr().err
        assert "waiting for" in err and "gave up" in err
