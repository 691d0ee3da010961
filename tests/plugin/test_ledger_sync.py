"""``rtgov ledger push|pull URL`` (issue 17, item 7): one ordered ledger for a team, in an
S3 bucket served by moto on a free local port (reached through fsspec and s3fs as CI
reaches a real bucket) or in a shared directory (``file://``).

Runners are state directories of one project whose sessions sign with one keyring key
(``RTGOV_SIGNING_KEY``), as CI runners do. Concurrent pushers are threads, each with its
own ledger, pushing at once after a barrier: exactly one lands per round, and every
other lands after ``pull --rebase`` and a new push.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.keys import generate_signer
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, append_session
from pytest_rtgov.store.ledger_pull import pull
from pytest_rtgov.store.ledger_remote import HEAD, open_shared
from pytest_rtgov.store.ledger_sync import SyncRefused, push
from pytest_rtgov.store.verify import verify_all
from tests.plugin._cli import cli
from tests.plugin._s3 import keys_in, moto_s3, prefix_url

BUCKET = "rtgov-ledgers"

TEST_FILE = """\
def test_one(rtgov):
    rtgov.record("accuracy", 0.9)


def test_two():
    assert True
"""

SIGNER = generate_signer("ci.example/team")
TRUST = Trust((SIGNER.verifier(),), (), Path("rtgov.keyring"), required=True)


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A local S3 server (moto, one request at a time) with one bucket."""
    with moto_s3(BUCKET) as client:
        yield client


@pytest.fixture
def bucket_url(s3, request) -> str:
    """This test's own prefix of the bucket."""
    return prefix_url(BUCKET, request)


def project(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests, and the one keyring key every runner's sessions sign with."""
    pytester.makepyfile(test_sync=TEST_FILE)
    assert cli(pytester, "keys", "generate", "ci.example/team", "--out", "ci.key") == 0
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(pytester.path / "ci.key"))


def session(pytester: pytest.Pytester, runner: str) -> None:
    pytester.runpytest("--rtgov", f"--rtgov-dir={runner}").assert_outcomes(passed=2)


def log_of(pytester: pytest.Pytester, runner: str) -> bytes:
    return (pytester.path / runner / "ledger" / "log").read_bytes()


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_two_runners_share_one_ledger(pytester, monkeypatch, capsys, kind, request):
    project(pytester, monkeypatch)
    url = (
        request.getfixturevalue("bucket_url")
        if kind == "s3"
        else f"file://{pytester.path / 'shared'}"
    )
    assert cli(pytester, "--dir", "b", "ledger", "pull", url) == 0
    assert "nothing to pull: no shared ledger" in capsys.readouterr().out
    session(pytester, "a")
    assert cli(pytester, "--dir", "a", "ledger", "push", url) == 0
    assert f"pushed: {url}/checkpoint now holds a/ledger/checkpoints/" in capsys.readouterr().out
    if kind == "s3":
        names = keys_in(request.getfixturevalue("s3"), url)
        assert names[0] == HEAD and [n[:16] for n in names[1:]] == ["logs/0000000006-"]

    assert cli(pytester, "--dir", "b", "ledger", "pull", url) == 0
    out, err = capsys.readouterr()
    assert f"pulled: b/ledger now holds {url}/checkpoint" in out
    assert "stay where their sessions ran" in err
    assert log_of(pytester, "b") == log_of(pytester, "a")
    # b has the ledger but not a's run record: verify checks the log, notes the record.
    assert cli(pytester, "--dir", "b", "verify") == 0
    out = capsys.readouterr().out
    assert f"1 run record(s) of leaves pulled from {url} are not here" in out

    session(pytester, "b")  # appends after a's session: the same chain
    assert cli(pytester, "--dir", "b", "ledger", "push", url) == 0
    assert cli(pytester, "--dir", "a", "ledger", "pull", url) == 0
    assert cli(pytester, "--dir", "a", "ledger", "push", url) == 0
    assert "up to date" in capsys.readouterr().out.splitlines()[-1]
    assert log_of(pytester, "a") == log_of(pytester, "b")
    assert len(re.findall(rb'"kind":"verdict"', log_of(pytester, "a"))) == 2
    for runner in ("a", "b"):
        capsys.readouterr()
        assert cli(pytester, "--dir", runner, "verify") == 0, capsys.readouterr()
        assert "1 run record(s) of leaves pulled" in capsys.readouterr().out


def _ledger_session(state: Path, run: str) -> None:
    append_session(
        Ledger(state / "ledger"),
        [canonical_json({"format": 1, "kind": "run", "run_id": run})],
        signer=SIGNER,
        origin="team.example/ledger",
        created_at="2026-11-30T00:00:00Z",
    )


def _runner(
    i: int, name: str, state: Path, url: str, barrier: threading.Barrier, result: dict[str, Any]
) -> None:
    """One runner's round: its session, a push at the same moment as the others, and,
    when refused, ``pull --rebase`` then push until it lands."""
    ledger, place = Ledger(state / "ledger"), open_shared(url)
    try:
        _ledger_session(state, name)
        barrier.wait(timeout=60)
        try:
            result["outcomes"][i] = push(ledger, place, TRUST).status
            barrier.wait(timeout=60)
            return
        except SyncRefused:
            result["outcomes"][i] = "refused"
        barrier.wait(timeout=60)  # the round's winner is in: now the retries
        for _ in range(20):
            result["retries"][i] += 1
            pull(ledger, place, TRUST, rebase=SIGNER)
            try:
                push(ledger, place, TRUST)
                return
            except SyncRefused:
                continue
        raise AssertionError(f"runner {i} never landed its push")
    except BaseException as exc:
        result["errors"].append(exc)
        barrier.abort()


@pytest.mark.parametrize("kind", ["s3", "file"])
def test_concurrent_pushers_one_wins_per_round_and_every_push_lands(tmp_path, kind, request):
    url = (
        request.getfixturevalue("bucket_url") if kind == "s3" else f"file://{tmp_path / 'shared'}"
    )
    runners, rounds = 3, 3
    states = [tmp_path / f"runner{i}" for i in range(runners)]
    _ledger_session(states[0], "seed")
    push(Ledger(states[0] / "ledger"), open_shared(url), TRUST)
    first_try: list[list[str]] = []
    retries = [0] * runners
    for round_ in range(rounds):
        for state in states:
            pull(Ledger(state / "ledger"), open_shared(url), TRUST)
        barrier = threading.Barrier(runners)
        result: dict[str, Any] = {"outcomes": ["?"] * runners, "retries": retries, "errors": []}
        threads = [
            threading.Thread(
                target=_runner, args=(i, f"r{round_}-w{i}", states[i], url, barrier, result)
            )
            for i in range(runners)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=300)
        assert not result["errors"], result["errors"]
        first_try.append(result["outcomes"])
    for outcomes in first_try:  # exactly one first attempt lands per round
        assert sorted(outcomes) == ["pushed", "refused", "refused"], first_try
    assert sum(retries) >= 2 * rounds
    for state in states:
        pull(Ledger(state / "ledger"), open_shared(url), TRUST)
    logs = {(state / "ledger" / "log").read_bytes() for state in states}
    assert len(logs) == 1  # one chain, the same for everyone
    runs = re.findall(rb'"run_id":"([^"]+)"', logs.pop())
    expected = {f"r{r}-w{i}".encode() for r in range(rounds) for i in range(runners)}
    assert sorted(runs) == sorted([b"seed", *expected])  # every push landed, once
    for state in states:
        verify_all(state, TRUST)


def test_bad_input_is_a_message_and_a_documented_code(pytester, monkeypatch, capsys):
    project(pytester, monkeypatch)
    shared = pytester.path / "shared"
    url = f"file://{shared}"
    cases = [
        (("--dir", "a", "ledger", "push", url), ExitCode.NOT_FOUND, "no signed ledger in a"),
        (("--dir", "a", "ledger", "pull", "gs://bucket/ledger"), ExitCode.USAGE, "gcsfs"),
        (("--dir", "a", "ledger", "pull", "nosuch://x"), ExitCode.USAGE, "knows no storage"),
    ]
    for args, code, text in cases:
        capsys.readouterr()
        assert cli(pytester, *args) == code
        err = capsys.readouterr().err
        assert text in err and "Traceback" not in err
    session(pytester, "a")
    shared.mkdir()
    (shared / HEAD).write_text("not a signed note\n")
    for action in ("pull", "push"):
        capsys.readouterr()
        assert cli(pytester, "--dir", "a", "ledger", action, url) == ExitCode.CHECKPOINT
        err = capsys.readouterr().err
        assert f"rtgov ledger: FAILED: {url}/checkpoint: not a trusted signed checkpoint" in err
    (shared / HEAD).unlink()
    assert cli(pytester, "--dir", "a", "ledger", "push", url) == 0
    monkeypatch.delenv("RTGOV_SIGNING_KEY")  # b's sessions sign with its own local key:
    session(pytester, "b")  # another ledger (its own genesis), not a copy of the shared one
    capsys.readouterr()
    assert cli(pytester, "--dir", "b", "ledger", "push", url) == ExitCode.HISTORY
    err = capsys.readouterr().err
    assert "have forked" in err and err.count("tree size") == 2 and err.count("root ") >= 2
    assert cli(pytester, "--dir", "b", "ledger", "pull", url) == ExitCode.HISTORY


def test_a_lost_push_lands_after_pull_rebase(pytester, monkeypatch, capsys):
    """Two CI jobs pulled the same ledger and ran: the second push is told to rebase."""
    project(pytester, monkeypatch)
    url = f"file://{pytester.path / 'shared'}"
    session(pytester, "a")
    assert cli(pytester, "--dir", "a", "ledger", "push", url) == 0
    assert cli(pytester, "--dir", "b", "ledger", "pull", url) == 0
    session(pytester, "a")
    session(pytester, "b")
    assert cli(pytester, "--dir", "a", "ledger", "push", url) == 0
    capsys.readouterr()
    assert cli(pytester, "--dir", "b", "ledger", "push", url) == ExitCode.REFUSED
    err = capsys.readouterr().err
    assert "the shared ledger moved on" in err and f"rtgov ledger pull --rebase {url}" in err
    assert cli(pytester, "--dir", "b", "ledger", "pull", url) == ExitCode.HISTORY
    assert "`rtgov ledger pull --rebase URL` appends" in capsys.readouterr().err
    assert cli(pytester, "--dir", "b", "ledger", "pull", "--rebase", url) == 0
    assert "rebased: b/ledger holds" in capsys.readouterr().out
    assert cli(pytester, "--dir", "b", "ledger", "push", url) == 0
    assert cli(pytester, "--dir", "a", "ledger", "pull", url) == 0
    assert log_of(pytester, "a") == log_of(pytester, "b")
    assert len(re.findall(rb'"kind":"verdict"', log_of(pytester, "a"))) == 3
    for runner in ("a", "b"):
        capsys.readouterr()
        assert cli(pytester, "--dir", runner, "verify") == 0, capsys.readouterr()
