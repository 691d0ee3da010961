"""What reaches a stage through plain fixtures is in its key; a stage is matched to its
inputs by stage name; another machine's entry on a shared store is left in place
(review findings on issue 15)."""

from __future__ import annotations

import json

import pytest

from tests.conftest import latest_record

CONFTEST = '''
import os

import numpy as np
import pytest

from pytest_rtgov import stage

N = int(os.environ.get("PREPARE_N", "4"))


@stage(params={"n": N})
def prepare(params):
    return {"x": np.arange(params["n"], dtype=np.float64)}


@pytest.fixture(scope="session")
def features(prepare):  # a plain fixture over a stage
    return prepare["x"] * 2


@pytest.fixture(scope="session")
def alias(prepare):  # the same stage under another name
    return prepare


@pytest.fixture(scope="session", params=[1, 2])
def scale(request):
    return request.param


@stage()
def train(features):
    return {"w": features + 1}


@stage()
def scaled(prepare, scale):
    return {"w": prepare["x"] * scale}


@stage()
def through_alias(alias):
    return {"w": alias["x"] - 1}
'''

TESTS = '''
def test_train(train):
    assert train["w"].shape[0] > 0


def test_scaled(scaled):
    assert scaled["w"].shape[0] > 0


def test_alias(through_alias):
    assert through_alias["w"].shape[0] > 0
'''


def _events(root) -> dict[tuple[str, str], dict]:
    record = latest_record(root)
    return {
        (f["name"], s["requested_by"]): s["stage"]
        for f in record["fixtures"]
        for s in f["setups"]
        if "stage" in s
    }


def _outcomes(root) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {}
    for (name, _), event in _events(root).items():
        found.setdefault(name, set()).add(event["outcome"])
    return found


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_closure=TESTS)
    return pytester


def _run(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str()


def test_an_upstream_stage_behind_a_plain_fixture_is_an_input(project, monkeypatch):
    _run(project)
    _run(project)
    assert _outcomes(project.path)["train"] == {"hit"}
    monkeypatch.setenv("PREPARE_N", "6")  # prepare's params change; train sees it
    _run(project)                          # only through the plain fixture `features`
    outcomes = _outcomes(project.path)
    assert outcomes["prepare"] == {"stored"}
    assert outcomes["train"] == {"stored"}, "a stale train would have been served"
    train = next(e for (n, _), e in _events(project.path).items() if n == "train")
    assert train["upstream"] == ["prepare"]


def test_each_param_of_a_parametrized_fixture_has_its_own_key(project):
    _run(project)
    events = [e for (n, _), e in _events(project.path).items() if n == "scaled"]
    assert len({e["key"] for e in events}) == 2
    assert len({json.dumps(e["outputs"]) for e in events}) == 2
    _run(project)
    assert _outcomes(project.path)["scaled"] == {"hit"}


def test_a_stage_behind_an_alias_fixture_hits(project):
    _run(project)
    _run(project)
    assert _outcomes(project.path)["through_alias"] == {"hit"}


def test_another_machines_entry_is_left_in_place_outside_ci(project, tmp_path):
    _run(project)
    entries = sorted((project.path / ".rtgov" / "stages" / "entries" / "prepare").iterdir())
    before = [e.read_bytes() for e in entries]
    # another machine: its own local key signed these; this one trusts only its own
    key = project.path / ".rtgov" / "keys"
    for path in sorted(key.rglob("*")) if key.exists() else []:
        if path.is_file():
            path.unlink()
    _run(project)
    events = [e for (n, _), e in _events(project.path).items() if n == "prepare"]
    assert {e["outcome"] for e in events} == {"refused"}
    assert all("left in place" in e["reason"] for e in events)
    assert [e.read_bytes() for e in entries] == before
    assert not (project.path / ".rtgov" / "stages" / "refused").exists()
