"""`rtgov stages list|show|recheck|gc` and `rtgov verify` of the stage cache, end to end:
pytester projects with two small @stage fixtures, the CLI run in-process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pytest_rtgov.core.stages import KeyInputs, Upstream, provenance_statement
from pytest_rtgov.store.keys import load_signing_key, load_trust
from pytest_rtgov.store.stage_cache import StageCache, open_backend
from tests.plugin._cli import cli

CONFTEST = """
import numpy as np
from pytest_rtgov import stage

@stage(params={"n": 4}, seeds={"data": 1})
def prepare(params, seeds):
    rng = np.random.default_rng(seeds["data"])
    return {"x": rng.standard_normal(params["n"])}, {"rows": params["n"]}

@stage(params={"scale": SCALE})
def train(prepare, params, rtgov):
    rtgov.record("loss", 0.25)
    return {"w": prepare["x"] * params["scale"] NOISE}
"""

TESTS = """
def test_train(train):
    assert train["w"].shape == (4,)
"""


def _project(pytester: pytest.Pytester, scale: float = 2.0, *, noisy: bool = False) -> None:
    noise = "+ np.random.default_rng().standard_normal(4)" if noisy else ""
    pytester.makeconftest(CONFTEST.replace("SCALE", repr(scale)).replace("NOISE", noise))
    pytester.makepyfile(test_train=TESTS)


def _session(pytester: pytest.Pytester, *args: str) -> dict[str, str]:
    """One --rtgov session; the stages' outcomes it recorded, by stage."""
    result = pytester.runpytest("--rtgov", "-p", "no:randomly", *args)
    assert result.ret == 0, result.stdout.str()
    latest = (pytester.path / ".rtgov" / "latest").read_text().strip()
    record = json.loads((pytester.path / ".rtgov" / "runs" / f"{latest}.json").read_text())
    return {
        setup["stage"]["stage"]: setup["stage"]["outcome"]
        for fixture in record["fixtures"]
        for setup in fixture["setups"]
        if setup.get("stage")
    }


def _entries(store: Path, stage: str) -> list[Path]:
    return sorted((store / "entries" / stage).glob("*.dsse.json"))


def _objects(store: Path) -> list[Path]:
    return sorted((store / "objects").rglob("*.npy"))


def _flip_byte(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[-1] ^= 1
    path.write_bytes(bytes(data))


def test_list_and_show_every_entry_with_its_provenance(pytester, capsys):
    _project(pytester)
    assert _session(pytester) == {"prepare": "stored", "train": "stored"}
    capsys.readouterr()
    assert cli(pytester, "stages", "list") == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split() == [
        *("STAGE", "KEY", "CREATED", "OUTPUTS", "BYTES", "SIGNER", "VERIFIES")
    ]
    assert "(untrusted local key)  yes" in out
    assert "2 entries in .rtgov/stages, 2 verify" in out

    assert cli(pytester, "stages", "list", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(e["stage"], e["verifies"]) for e in listed["entries"]] == [
        ("prepare", True),
        ("train", True),
    ]
    train = listed["entries"][1]
    assert train["bytes"] == train["outputs"]["w"]["bytes"] > 0
    assert train["signed_by"][0]["trusted"] is False and train["created"].endswith("Z")

    assert cli(pytester, "stages", "show", "train") == 0
    shown = capsys.readouterr().out
    prepare_key = listed["entries"][0]["key"]
    assert f"upstream     prepare key {prepare_key[:12]}: x=sha256:" in shown
    assert 'params       {"scale":2.0}' in shown and "metric       loss = 0.25" in shown
    assert "code         conftest.py::train" in shown and '"backend":"numpy"' in shown
    assert cli(pytester, "stages", "show", "prepare", "--json") == 0
    prepared = json.loads(capsys.readouterr().out)["entries"][0]
    assert prepared["seeds"] == {"data": 1} and prepared["metadata"] == {"rows": 4}

    assert cli(pytester, "stages", "show", "nope") == 3
    assert "no entry of stage 'nope'" in capsys.readouterr().err


def test_show_lists_a_stages_entries_newest_first(pytester, capsys):
    for scale in (2.0, 3.0):
        _project(pytester, scale)
        _session(pytester)
    capsys.readouterr()
    assert cli(pytester, "stages", "show", "train", "--format", "json") == 0
    entries = json.loads(capsys.readouterr().out)["entries"]
    assert sorted(e["params"]["scale"] for e in entries) == [2.0, 3.0]
    # finishedOn has whole seconds: entries of one second are ordered by key
    order = [(e["created"], e["key"]) for e in entries]
    assert order == sorted(order, reverse=True)


def test_verify_checks_the_stage_cache_and_fails_on_a_flipped_byte(pytester, capsys):
    _project(pytester)
    _session(pytester)
    capsys.readouterr()
    assert cli(pytester, "verify") == 0
    captured = capsys.readouterr()
    assert "2 stage cache entries verified (signature, objects, key, chain)" in captured.out
    assert "2 stage entries signed by the untrusted local key" in captured.err
    store = pytester.path / ".rtgov" / "stages"
    _flip_byte(_objects(store)[0])
    assert cli(pytester, "verify") == 15
    err = capsys.readouterr().err
    assert "rtgov verify: FAILED: .rtgov/stages/entries/" in err
    assert "stage entry: output" in err and "bytes hash to sha256" in err
    assert cli(pytester, "stages", "list") == 0  # a listing says so, and does not fail
    assert "NO: output" in capsys.readouterr().out


def test_verify_fails_on_an_entry_whose_name_is_not_its_key(pytester, capsys):
    _project(pytester)
    _session(pytester)
    entry = _entries(pytester.path / ".rtgov" / "stages", "train")[0]
    entry.rename(entry.with_name("0" * 64 + ".dsse.json"))
    capsys.readouterr()
    assert cli(pytester, "verify") == 15
    assert "its file name says 000000000000" in capsys.readouterr().err


def _forge(state: Path, stage: str, upstream: Upstream, output: str) -> str:
    """A validly signed (local key) entry of ``stage`` built from ``upstream``."""
    trust = load_trust(keyring=None, state_dir=state, required=False)
    signing = load_signing_key(key_file=None, state_dir=state)
    cache = StageCache(
        open_backend(None, state_dir=state), signer=signing.signer, trust=trust, lock_dir=state
    )
    inputs = KeyInputs(stage, {}, {}, {}, {"backend": "numpy"}, (upstream,))
    blob = b"forged array bytes"
    import hashlib

    digest = hashlib.sha256(blob).hexdigest()
    subjects, predicate = provenance_statement(
        inputs, key=inputs.key(), outputs={output: digest}, metadata={}, metrics=(),
        device="numpy", invocation="forged", started_on="2026-01-01T00:00:00Z",
        finished_on="2026-01-01T00:00:00Z", builder_version="0",
    )  # fmt: skip
    cache.store(stage, inputs.key(), subjects, predicate, {output: blob})
    return inputs.key()


def test_verify_fails_on_a_broken_chain_and_notes_a_missing_upstream(pytester, capsys):
    _project(pytester)
    _session(pytester)
    state = pytester.path / ".rtgov"
    capsys.readouterr()
    assert cli(pytester, "stages", "list", "--json") == 0
    prepare = json.loads(capsys.readouterr().out)["entries"][0]
    # Built from prepare's key, but from outputs that entry does not hold: MATCH fails.
    forged = _forge(state, "train", Upstream("prepare", prepare["key"], {"x": "a" * 64}), "w")
    assert cli(pytester, "verify") == 15
    err = capsys.readouterr().err
    assert f"entries/train/{forged}.dsse.json: stage entry: chain: built from prepare" in err
    assert "but that entry holds x=" in err
    (state / "stages" / "entries" / "train" / f"{forged}.dsse.json").unlink()
    # An upstream simply gone (gc'd) is a note, not a failure.
    _forge(state, "train", Upstream("prepare", "b" * 64, {"x": "c" * 64}), "w")
    assert cli(pytester, "verify") == 0
    out = capsys.readouterr().out
    assert "its upstream prepare (key bbbbbbbbbbbb" in out and "has no entry in this store" in out


def test_verify_under_required_signatures_fails_on_a_local_key_entry(pytester, capsys):
    """A keyring key signs the sessions; an entry signed by any other key is refused."""
    _project(pytester)
    capsys.readouterr()
    assert cli(pytester, "keys", "generate", "ci/key", "-o", "ci.key") == 0
    _session(pytester, "--rtgov-signing-key", "ci.key")
    assert cli(pytester, "verify", "--require-signature") == 0
    assert "2 stage cache entries verified" in capsys.readouterr().out
    state = pytester.path / ".rtgov"
    prepare_key = _entries(state / "stages", "prepare")[0].name[:64]
    upstream = json.loads(_entries(state / "stages", "prepare")[0].read_text())
    assert upstream  # a local-key entry, as another machine's session would leave
    _forge(state, "train", Upstream("prepare", prepare_key, {"x": "d" * 64}), "w")
    assert cli(pytester, "verify", "--require-signature") == 15
    assert "not signed by a key of the keyring" in capsys.readouterr().err


def test_recheck_reports_identical_outputs(pytester, capsys):
    _project(pytester)
    _session(pytester)
    capsys.readouterr()
    assert cli(pytester, "stages", "recheck", "train") == 0
    out = capsys.readouterr().out
    assert "requested it by test_train.py::test_train" in out
    assert "re-executed, outputs identical to the entry" in out
    latest = (pytester.path / ".rtgov" / "latest").read_text().strip()
    assert latest in out


def test_recheck_of_a_nondeterministic_stage_is_a_finding_exit_6(pytester, capsys):
    _project(pytester, noisy=True)
    _session(pytester)
    capsys.readouterr()
    assert cli(pytester, "stages", "recheck", "train") == 6
    out = capsys.readouterr().out
    assert "nondeterministic: stage train under key" in out
    assert "w: sha256:" in out and " vs sha256:" in out and "(cached vs re-executed)" in out


def test_recheck_uses_the_store_it_is_given(pytester, capsys):
    _project(pytester)
    _session(pytester, "--rtgov-stage-store", "shared")
    assert not (pytester.path / ".rtgov" / "stages" / "entries").exists()
    capsys.readouterr()
    assert cli(pytester, "stages", "recheck", "prepare", "--store", "shared") == 0
    out = capsys.readouterr().out
    assert "--rtgov-stage-store " + str(pytester.path / "shared") in out
    assert "outputs identical to the entry" in out


def test_recheck_of_a_stage_never_run_is_exit_3(pytester, capsys):
    _project(pytester)
    _session(pytester)
    capsys.readouterr()
    assert cli(pytester, "stages", "recheck", "evaluate") == 3
    assert "stage 'evaluate' was never run" in capsys.readouterr().err


def test_recheck_with_no_entry_left_says_so_exit_3(pytester, capsys):
    _project(pytester)
    _session(pytester)
    for entry in _entries(pytester.path / ".rtgov" / "stages", "train"):
        entry.unlink()
    capsys.readouterr()
    assert cli(pytester, "stages", "recheck", "train") == 3
    assert "no valid entry to compare with (outcome stored" in capsys.readouterr().err


def _train_keys(pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]) -> list[str]:
    """The train entries' keys, newest first (finishedOn, then key)."""
    capsys.readouterr()
    assert cli(pytester, "stages", "list", "--json") == 0
    rows = [e for e in json.loads(capsys.readouterr().out)["entries"] if e["stage"] == "train"]
    return [e["key"] for e in sorted(rows, key=lambda e: (e["created"], e["key"]), reverse=True)]


def test_gc_keeps_the_newest_and_the_latest_runs_entries(pytester, capsys):
    for scale in (2.0, 3.0, 4.0):
        _project(pytester, scale)
        _session(pytester)
    _project(pytester, 2.0)  # the latest run uses the first train entry again
    assert _session(pytester) == {"prepare": "hit", "train": "hit"}
    store = pytester.path / ".rtgov" / "stages"
    (store / "refused" / "train").mkdir(parents=True)
    (store / "refused" / "train" / "evidence.dsse.json").write_text("{}")
    assert len(_entries(store, "train")) == 3 and len(_objects(store)) == 4
    latest = (pytester.path / ".rtgov" / "latest").read_text().strip()
    record = json.loads((pytester.path / ".rtgov" / "runs" / f"{latest}.json").read_text())
    used = {
        s["stage"]["key"] for f in record["fixtures"] for s in f["setups"]
        if s.get("stage", {}).get("stage") == "train"
    }  # fmt: skip
    newest_first = _train_keys(pytester, capsys)
    kept = {newest_first[0]} | used
    gone = len(newest_first) - len(kept)

    assert cli(pytester, "stages", "gc", "--keep", "1", "--dry-run") == 0
    out = capsys.readouterr().out
    assert f"would remove {gone} entr" in out and "nothing removed" in out
    assert len(_entries(store, "train")) == 3

    assert cli(pytester, "stages", "gc", "--keep", "1") == 0
    out = capsys.readouterr().out
    assert out.count("removed entry train") == gone and out.count("removed object") == gone
    assert {p.name[:64] for p in _entries(store, "train")} == kept
    assert len(_objects(store)) == 1 + len(kept)
    assert (store / "refused" / "train" / "evidence.dsse.json").exists()
    assert _session(pytester) == {"prepare": "hit", "train": "hit"}
    assert cli(pytester, "verify") == 0

    assert cli(pytester, "stages", "gc", "--keep", "0") == 0  # only the latest run's stay
    assert {p.name[:64] for p in _entries(store, "train")} == used
    assert len(_objects(store)) == 2
    assert _session(pytester) == {"prepare": "hit", "train": "hit"}
    with pytest.raises(SystemExit) as exc:
        cli(pytester, "stages", "gc", "--keep", "-1")
    assert exc.value.code == 2


def test_the_projects_stage_store_setting_is_honoured(pytester, capsys):
    _project(pytester)
    pytester.makeini("[pytest]\nrtgov_stage_store = cache/stages\n")
    _session(pytester)
    assert len(_entries(pytester.path / "cache" / "stages", "train")) == 1
    assert not (pytester.path / ".rtgov" / "stages" / "entries").exists()
    capsys.readouterr()
    assert cli(pytester, "stages", "list") == 0
    assert "2 entries in " in capsys.readouterr().out
    assert cli(pytester, "verify") == 0
    assert "2 stage cache entries verified" in capsys.readouterr().out
    assert cli(pytester, "stages", "list", "--store", str(pytester.path / "elsewhere")) == 0
    assert "0 entries in " in capsys.readouterr().out
    _flip_byte(_objects(pytester.path / "cache" / "stages")[0])
    assert cli(pytester, "verify") == 15


@pytest.mark.parametrize(
    "config",
    [
        '[tool.pytest.ini_options]\nrtgov_stage_store = "cache/stages"\n',
        '[tool.pytest.ini_options]\naddopts = "--rtgov-stage-store cache/stages"\n',
        '[tool.pytest.ini_options]\naddopts = "-o rtgov_stage_store=cache/stages"\n',
    ],
    ids=["ini-key", "addopts", "override"],
)
def test_the_stage_store_in_pyproject_is_honoured(pytester, capsys, config):
    _project(pytester)
    pytester.makefile(".toml", pyproject=config)
    _session(pytester)
    assert len(_entries(pytester.path / "cache" / "stages", "train")) == 1
    capsys.readouterr()
    assert cli(pytester, "stages", "list", "--format", "json") == 0
    listed = json.loads(capsys.readouterr().out)
    assert listed["store"].endswith("cache/stages") and len(listed["entries"]) == 2


def test_a_refused_entry_is_repaired_so_the_next_session_hits(pytester):
    """A flipped byte in an object: refused once, re-executed, and the object rewritten
    (the same digest's object was kept damaged before, refused every session after)."""
    _project(pytester)
    _session(pytester)
    store = pytester.path / ".rtgov" / "stages"
    prepared = json.loads(_entries(store, "prepare")[0].read_text())
    assert prepared
    for obj in _objects(store):
        _flip_byte(obj)
    assert _session(pytester) == {"prepare": "refused", "train": "refused"}
    assert _session(pytester) == {"prepare": "hit", "train": "hit"}


def _from_a_newer_rtgov(entry: Path) -> None:
    """Rewrite ``entry`` as an rtgov release this one cannot parse would seal it."""
    import base64

    envelope = json.loads(entry.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    build = statement["predicate"]["buildDefinition"]
    build["buildType"] = build["buildType"] + "/v9"
    envelope["payload"] = base64.b64encode(json.dumps(statement).encode()).decode()
    entry.write_text(json.dumps(envelope))


def _unused_train_key(pytester: pytest.Pytester) -> str:
    """The train entry the latest session did not use."""
    latest = (pytester.path / ".rtgov" / "latest").read_text().strip()
    record = json.loads((pytester.path / ".rtgov" / "runs" / f"{latest}.json").read_text())
    used = {
        s["stage"]["key"] for f in record["fixtures"] for s in f["setups"]
        if s.get("stage", {}).get("stage") == "train"
    }  # fmt: skip
    store = pytester.path / ".rtgov" / "stages"
    (unused,) = {p.name[:64] for p in _entries(store, "train")} - used
    return unused


def test_gc_keeps_the_objects_an_unreadable_entry_names(pytester, capsys):
    """An entry from a newer rtgov in a shared bucket is left alone, and so are the
    objects its JSON names: gc keeps every 64-hex digest found in it."""
    for scale in (2.0, 3.0):
        _project(pytester, scale)
        _session(pytester)
    store = pytester.path / ".rtgov" / "stages"
    older = _unused_train_key(pytester)
    _from_a_newer_rtgov(store / "entries" / "train" / f"{older}.dsse.json")
    assert len(_objects(store)) == 3
    assert cli(pytester, "stages", "gc", "--keep", "0") == 0
    out = capsys.readouterr().out
    assert f"left alone entries/train/{older}.dsse.json" in out
    assert "removed object" not in out and len(_objects(store)) == 3
    assert len(_entries(store, "train")) == 2


def test_gc_removes_no_object_while_an_entry_cannot_be_read_at_all(pytester, capsys):
    for scale in (2.0, 3.0):
        _project(pytester, scale)
        _session(pytester)
    store = pytester.path / ".rtgov" / "stages"
    older = _unused_train_key(pytester)
    entry = store / "entries" / "train" / f"{older}.dsse.json"
    entry.write_bytes(entry.read_bytes()[:200])  # half-written: not even JSON
    assert cli(pytester, "stages", "gc", "--keep", "0") == 0
    out = capsys.readouterr().out
    assert "removed object" not in out and "no object removed" in out
    assert len(_objects(store)) == 3
