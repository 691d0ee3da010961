"""The stage cache in shared storage (issue 15, item 9): an S3 bucket served by moto's
server on a free local port, reached through fsspec and s3fs as a user's CI would reach
a real bucket (``AWS_ENDPOINT_URL``, credentials from the environment).

The realistic setup of a shared cache: every session signs with one key of the committed
keyring (``RTGOV_SIGNING_KEY``), so a session on another state directory (another CI
runner, a laptop) trusts what the first one stored. Each test uses its own prefix of one
bucket.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from pytest_rtgov.store.stage_cache import (
    LocalBackend,
    StageCache,
    StageStoreError,
    entry_rel,
    open_backend,
)
from tests.plugin._cli import cli
from tests.plugin._s3 import free_port, keys_in, moto_s3, prefix_url

BUCKET = "rtgov-stages"

CONFTEST = '''\
import numpy as np

from pytest_rtgov import stage


@stage(params={"n": 8}, seeds={"data": 0})
def prepare(params, seeds):
    rng = np.random.default_rng(seeds["data"])
    return {"x": rng.normal(size=(params["n"], 3))}, {"rows": params["n"]}


@stage(params={"scale": 0.5})
def train(prepare, params):
    return {"w": prepare["x"].mean(axis=0) * params["scale"]}
'''

TEST_FILE = """\
def test_model(train):
    assert train["w"].shape == (3,)
"""

# One stage whose body waits until both sessions are inside it: both compute the same
# key before either stores (the two sessions use two state directories: no shared lock).
RACE_CONFTEST = '''\
import os
import pathlib
import time

import numpy as np

from pytest_rtgov import stage


@stage(params={"n": 4})
def shared(params):
    barrier = pathlib.Path(os.environ["RTGOV_TEST_BARRIER"])
    (barrier / str(os.getpid())).touch()
    deadline = time.monotonic() + 300  # a safeguard only: the test asserts both arrived
    while len(list(barrier.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    value = np.arange(params["n"], dtype=float)
    if os.environ.get("RTGOV_TEST_NONDETERMINISTIC"):
        value = value + os.getpid()
    return {"x": value}
'''

RACE_TEST = """\
def test_shared(shared):
    assert shared["x"].shape == (4,)
"""


@pytest.fixture(scope="module")
def s3() -> Iterator[Any]:
    """A local S3 server (moto, one request at a time) with one bucket."""
    with moto_s3(BUCKET) as client:
        yield client


@pytest.fixture
def store(s3, request) -> str:
    """This test's own prefix of the bucket, as a stage store URL."""
    return prefix_url(BUCKET, request)


def shared_project(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, store: str
) -> None:
    """One key of the committed keyring, the one every session signs with, and the store
    in the project's configuration (so ``rtgov verify`` checks the bucket too)."""
    pytester.makeini(f"[pytest]\nrtgov_stage_store = {store}\n")
    assert cli(pytester, "keys", "generate", "ci.example/stages", "--out", "ci.key") == 0
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(pytester.path / "ci.key"))


def events(state_dir: Path) -> dict[str, dict[str, Any]]:
    """``{stage: event}`` of the latest session in ``state_dir``."""
    run_id = (state_dir / "latest").read_text().strip()
    record = json.loads((state_dir / "runs" / f"{run_id}.json").read_text())
    found = [s["stage"] for f in record["fixtures"] for s in f["setups"] if "stage" in s]
    return {event["stage"]: event for event in found}


def session(pytester: pytest.Pytester, state: str, store: str) -> pytest.RunResult:
    return pytester.runpytest("--rtgov", f"--rtgov-dir={state}", f"--rtgov-stage-store={store}")


def test_a_session_on_another_state_directory_hits_what_the_first_stored(
    pytester, monkeypatch, capsys, s3, store
):
    shared_project(pytester, monkeypatch, store)
    pytester.makepyfile(conftest=CONFTEST, test_model=TEST_FILE)
    session(pytester, "runner-a", store).assert_outcomes(passed=1)
    first = events(pytester.path / "runner-a")
    assert {name: e["outcome"] for name, e in first.items()} == {
        "prepare": "stored",
        "train": "stored",
    }
    names = keys_in(s3, store)
    assert sorted(n for n in names if n.startswith("entries/")) == sorted(
        f"entries/{name}/{e['key']}.dsse.json" for name, e in first.items()
    )
    digests = {d for e in first.values() for d in e["outputs"].values()}
    assert {n for n in names if n.startswith("objects/")} == {
        f"objects/{d[:2]}/{d}.npy" for d in digests
    }
    assert not (pytester.path / "runner-a" / "stages" / "entries").exists()  # all in S3

    result = session(pytester, "runner-b", store)
    result.assert_outcomes(passed=1)
    second = events(pytester.path / "runner-b")
    assert {name: e["outcome"] for name, e in second.items()} == {
        "prepare": "hit",
        "train": "hit",
    }
    for name, event in second.items():
        assert event["key"] == first[name]["key"]
        assert event["outputs"] == first[name]["outputs"]
        assert event["envelope_sha256"] == first[name]["envelope_sha256"]
        assert event["signed_by"] == ["ci.example/stages"]
    for state in ("runner-a", "runner-b"):
        capsys.readouterr()
        assert cli(pytester, "--dir", state, "verify") == 0
        assert "2 stage cache entries verified" in capsys.readouterr().out  # in the bucket
    assert cli(pytester, "--dir", "runner-b", "stages", "list") == 0
    listed = capsys.readouterr().out
    assert all(first[name]["key"][:12] in listed for name in ("prepare", "train"))


def test_a_tampered_object_in_the_bucket_is_refused_then_replaced(
    pytester, monkeypatch, s3, store
):
    shared_project(pytester, monkeypatch, store)
    pytester.makepyfile(conftest=CONFTEST, test_model=TEST_FILE)
    session(pytester, "runner-a", store).assert_outcomes(passed=1)
    digest = events(pytester.path / "runner-a")["train"]["outputs"]["w"]
    name = f"{store[len(f's3://{BUCKET}/') :]}/objects/{digest[:2]}/{digest}.npy"
    blob = bytearray(s3.get_object(Bucket=BUCKET, Key=name)["Body"].read())
    blob[-1] ^= 0x01  # one flipped bit of the last float
    s3.put_object(Bucket=BUCKET, Key=name, Body=bytes(blob))

    session(pytester, "runner-b", store).assert_outcomes(passed=1)
    refused = events(pytester.path / "runner-b")
    assert refused["prepare"]["outcome"] == "hit"
    assert refused["train"]["outcome"] == "refused"
    assert f"the entry seals {digest[:12]}" in refused["train"]["reason"]
    assert any(n.startswith("refused/train/") for n in keys_in(s3, store))  # kept as evidence
    fixed = s3.get_object(Bucket=BUCKET, Key=name)["Body"].read()
    assert hashlib.sha256(fixed).hexdigest() == digest  # the re-execution put it back whole

    session(pytester, "runner-c", store).assert_outcomes(passed=1)
    assert {n: e["outcome"] for n, e in events(pytester.path / "runner-c").items()} == {
        "prepare": "hit",
        "train": "hit",
    }
    assert cli(pytester, "--dir", "runner-b", "verify") == 0


@pytest.mark.parametrize("nondeterministic", [False, True], ids=["same", "different"])
def test_two_sessions_storing_one_key_at_once_leave_one_whole_entry(
    pytester, monkeypatch, s3, store, nondeterministic
):
    shared_project(pytester, monkeypatch, store)
    pytester.makepyfile(conftest=RACE_CONFTEST, test_shared=RACE_TEST)
    barrier = pytester.mkdir("barrier")
    env = {**os.environ, "RTGOV_TEST_BARRIER": str(barrier)}
    if nondeterministic:
        env["RTGOV_TEST_NONDETERMINISTIC"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider"]
    runs = [
        subprocess.Popen(
            [*command, "--rtgov", f"--rtgov-dir={state}", f"--rtgov-stage-store={store}"],
            cwd=pytester.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for state in ("runner-a", "runner-b")
    ]
    outputs = [run.communicate(timeout=600)[0] for run in runs]
    assert len(list(barrier.iterdir())) == 2  # both computed before either stored
    found = [events(pytester.path / state)["shared"] for state in ("runner-a", "runner-b")]
    winner, loser = sorted(found, key=lambda e: e["outcome"] != "stored")
    assert (winner["outcome"], loser["outcome"]) == ("stored", "miss"), outputs
    entries = [n for n in keys_in(s3, store) if n.startswith("entries/")]
    assert entries == [f"entries/shared/{winner['key']}.dsse.json"]
    prefix = store[len(f"s3://{BUCKET}/") :]
    data = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/{entries[0]}")["Body"].read()
    assert hashlib.sha256(data).hexdigest() == winner["envelope_sha256"]  # never torn
    assert loser["envelope_sha256"] == winner["envelope_sha256"]  # it read the winner's
    codes = {e["outcome"]: run.returncode for e, run in zip(found, runs, strict=True)}
    if nondeterministic:
        assert loser["reason"] == "another session stored different outputs"
        assert "nondeterministic: stage shared" in loser["finding"]
        assert codes == {"stored": 0, "miss": 6}
    else:
        assert loser["reason"] == "another session stored the same outputs first"
        assert "finding" not in loser
        assert codes == {"stored": 0, "miss": 0}
    for state in ("runner-a", "runner-b"):
        assert cli(pytester, "--dir", state, "verify") == 0


def test_ci_refuses_what_a_laptop_signed_with_its_local_key_into_the_bucket(
    pytester, monkeypatch, s3, store
):
    pytester.makeini(f"[pytest]\nrtgov_stage_store = {store}\n")
    pytester.makepyfile(conftest=CONFTEST, test_model=TEST_FILE)
    session(pytester, "laptop", store).assert_outcomes(passed=1)  # its local key signs
    assert cli(pytester, "keys", "generate", "ci.example/stages", "--out", "ci.key") == 0
    trusted = next(
        line
        for line in (pytester.path / "rtgov.keyring").read_text().splitlines()
        if line.startswith("ci.example/stages+")
    )
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", trusted)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(pytester.path / "ci.key"))
    result = session(pytester, "ci", store)
    result.assert_outcomes(passed=1)
    assert result.ret == 7  # the evidence cannot be trusted
    refused = events(pytester.path / "ci")
    assert {name: e["outcome"] for name, e in refused.items()} == {
        "prepare": "refused",
        "train": "refused",
    }
    assert all("not signed by a key of the keyring" in e["reason"] for e in refused.values())
    assert sum(n.startswith("refused/") for n in keys_in(s3, store)) == 2  # the evidence
    again = session(pytester, "ci-again", store)  # CI's own entries, stored on refusal
    assert again.ret == 0
    assert {n: e["outcome"] for n, e in events(pytester.path / "ci-again").items()} == {
        "prepare": "hit",
        "train": "hit",
    }


def test_a_store_that_cannot_be_reached_is_a_miss_not_an_error(
    pytester, monkeypatch, request, s3
):
    s3fs = pytest.importorskip("s3fs")
    s3fs.S3FileSystem.clear_instance_cache()  # fsspec reuses a filesystem, endpoint and all
    request.addfinalizer(s3fs.S3FileSystem.clear_instance_cache)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # botocore's retries (s3fs retries too)
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")  # nobody there
    one_stage = CONFTEST[: CONFTEST.index("@stage(params={\"scale\"")]
    pytester.makepyfile(conftest=one_stage, test_model="def test_model(prepare):\n    pass\n")
    result = session(pytester, ".rtgov", f"s3://{BUCKET}/unreachable")
    result.assert_outcomes(passed=1)
    assert result.ret == 0
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    for event in events(pytester.path / ".rtgov").values():
        assert event["outcome"] == "miss"
        assert event["reason"].startswith(
            f"not stored: stage store s3://{BUCKET}/unreachable/objects/"
        ), event["reason"]
        assert "EndpointConnectionError" in event["reason"]


# -- the backend itself -----------------------------------------------------------------


def test_the_backend_creates_once_and_sees_other_writers(s3, store, tmp_path):
    backend = open_backend(store, state_dir=tmp_path)
    assert backend.create("entries/s/k.dsse.json", b"first") is True
    assert backend.create("entries/s/k.dsse.json", b"second") is False  # If-None-Match
    assert backend.read("entries/s/k.dsse.json") == b"first"
    assert backend.list("entries") == ["entries/s/k.dsse.json"]  # a listing now cached
    prefix = store[len(f"s3://{BUCKET}/") :]
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/entries/s/other.dsse.json", Body=b"x")
    assert backend.exists("entries/s/other.dsse.json")  # another writer's object
    assert backend.list("entries") == ["entries/s/k.dsse.json", "entries/s/other.dsse.json"]
    backend.move("entries/s/other.dsse.json", "refused/s/other.dsse.json")
    assert backend.list("entries") == ["entries/s/k.dsse.json"]
    assert not backend.exists("entries/s/other.dsse.json")
    assert backend.read("refused/s/other.dsse.json") == b"x"
    backend.delete("refused/s/other.dsse.json")
    backend.delete("refused/s/other.dsse.json")  # already gone: nothing to do
    assert backend.read("refused/s/other.dsse.json") is None
    assert backend.list("nothing-here") == []


def test_a_conditional_put_refuses_a_writer_that_saw_no_entry(s3, store, tmp_path, monkeypatch):
    """Two writers that both looked before either wrote: the check cannot stop the second,
    the conditional put (If-None-Match) must."""
    backend = open_backend(store, state_dir=tmp_path)
    monkeypatch.setattr(backend, "exists", lambda rel: False)
    assert backend.create("entries/s/race.dsse.json", b"first") is True
    assert backend.create("entries/s/race.dsse.json", b"second") is False
    assert backend.read("entries/s/race.dsse.json") == b"first"


def test_a_bucket_that_does_not_exist_is_a_store_error_naming_it(s3, tmp_path):
    backend = open_backend("s3://no-such-bucket/stages", state_dir=tmp_path)
    assert backend.read("entries/s/k.dsse.json") is None  # absent: a miss
    with pytest.raises(StageStoreError, match=r"s3://no-such-bucket/stages/entries/s/k"):
        backend.create("entries/s/k.dsse.json", b"x")


def test_a_store_without_conditional_writes_still_creates_once(tmp_path):
    pytest.importorskip("fsspec")
    backend = open_backend(f"memory://rtgov-{tmp_path.name}", state_dir=tmp_path)
    assert backend.create("entries/s/k.dsse.json", b"first") is True
    assert backend.create("entries/s/k.dsse.json", b"second") is False
    assert backend.read("entries/s/k.dsse.json") == b"first"


def test_an_s3_store_without_the_remote_extra_is_a_usage_error(pytester, monkeypatch):
    monkeypatch.setitem(sys.modules, "s3fs", None)  # as if not installed
    pytester.makepyfile(conftest=CONFTEST, test_model=TEST_FILE)
    result = pytester.runpytest("--rtgov", "--rtgov-stage-store", f"s3://{BUCKET}/x")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert f"--rtgov-stage-store: the stage store s3://{BUCKET}/x needs s3fs" in err
    assert "pip install 'pytest-rtgov[remote]'" in err
    assert "Traceback" not in err
    result.stdout.no_fnmatch_line("*1 passed*")  # before any test ran


def test_an_entry_the_store_cannot_read_is_unavailable_not_refused(tmp_path):
    """A store that fails mid-lookup is no refusal (a refusal sets the entry aside, and
    under CI=true fails the session): the session executes the stage instead."""

    class Flaky(LocalBackend):
        def read(self, rel: str) -> bytes | None:
            raise StageStoreError(f"stage store {self.url}/{rel}: cannot read: timed out")

    backend = Flaky(tmp_path)
    backend.put(entry_rel("prepare", "k"), b"{}")
    cache = StageCache(backend, signer=None, trust=None, lock_dir=tmp_path / "locks")
    found = cache.lookup("prepare", "k", {})
    assert (found.status, found.reason) == (
        "unavailable",
        f"stage store {tmp_path}/entries/prepare/k.dsse.json: cannot read: timed out",
    )
    assert backend.exists(entry_rel("prepare", "k"))  # not set aside
