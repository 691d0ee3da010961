"""Issue 15's "done when" for the stage cache, end to end: which stages re-run after
each edit, refused entries, early cutoff, inputs moving while a stage runs, xdist, and
rechecks. The project is ``tests/plugin/_stage_project.py``'s four stages; every answer
is read from the run record's stage events (and the ledger's ``stage`` leaves)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from pathlib import Path

import numpy
import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED, EXIT_INTEGRITY
from pytest_rtgov.store.verify import EXIT_SEAL
from tests.plugin._cli import cli
from tests.plugin._stage_project import (
    STAGES,
    edit,
    ledger_stage_leaves,
    outcomes,
    stage_events,
    write_project,
)

ALL_STORED = dict.fromkeys(STAGES, "stored")
ALL_HITS = dict.fromkeys(STAGES, "hit")


@pytest.fixture
def project(pytester, monkeypatch):
    """The four-stage project. No bytecode is written: an edit within the same second
    that keeps a file's size must not run a stale ``.pyc``."""
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    write_project(pytester)
    return pytester


def session(project, *args: str, ret: int = 0) -> dict[str, str]:
    """One ``--rtgov`` session in-process; its ``{stage: outcome}``."""
    result = project.runpytest("--rtgov", *args)
    assert result.ret == ret, result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stdout.str() + result.stderr.str()
    return outcomes(project.path)


def warm(project) -> dict[str, dict]:
    """A cold session (every stage stored) and a warm one (every stage a hit); the warm
    session's events by stage."""
    assert session(project) == ALL_STORED
    assert session(project) == ALL_HITS
    return {e["stage"]: e for e in stage_events(project.path)}


def rerun(*names: str) -> dict[str, str]:
    """The outcomes of a session that re-executes ``names`` under new keys."""
    return {name: "stored" if name in names else "hit" for name in STAGES}


def store(project) -> Path:
    return project.path / ".rtgov" / "stages"


def verify(project, capsys) -> tuple[int, str]:
    """``rtgov verify`` in the project: its status and its stderr."""
    capsys.readouterr()
    status = cli(project, "verify")
    return status, capsys.readouterr().err


def entry_files(project) -> dict[str, bytes]:
    base = store(project) / "entries"
    return {p.relative_to(base).as_posix(): p.read_bytes() for p in sorted(base.rglob("*.json"))}


# -- 1. the invalidation matrix ---------------------------------------------------------------


def _helper(project, monkeypatch):
    edit(project, "helpers.py", "np.tanh(x * 2.0)", "np.tanh(x * 3.0)")


def _cosmetic(project, monkeypatch):
    edit(
        project,
        "helpers.py",
        "def scale(x):\n    # the pretraining transform\n    return np.tanh(x * 2.0)",
        'def scale(x):\n\n    """Squash x."""\n    # reworded\n    return np.tanh(\n'
        "        x*2.0  # spaced differently\n    )",
    )
    edit(
        project,
        "conftest.py",
        "def pretrain(prepare, seeds):\n",
        'def pretrain(prepare, seeds):\n    """Pretrain on the prepared data."""\n\n'
        "    # a comment\n",
    )
    edit(project, "conftest.py", "    w = w - params", "    w = (w) - params")  # parentheses


def _finetune_param(project, monkeypatch):
    edit(project, "conftest.py", '"lr": 0.1,', '"lr": 0.05,')


def _seed(project, monkeypatch):
    edit(project, "conftest.py", '{"init": 7}', '{"init": 8}')


def _numpy_version(project, monkeypatch):
    # the key reads numpy.__version__ when the stage is set up: an upgrade, simulated
    monkeypatch.setattr(numpy, "__version__", numpy.__version__ + ".post99")


def _test_file(project, monkeypatch):
    project.makepyfile(
        test_model="""\
        import numpy as np

        def test_model(evaluate):
            assert np.isfinite(evaluate["mse"]).all()

        def test_another(pretrain):
            assert set(pretrain) == {"w", "features"}
        """
    )


def _threads(project, monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")


def _unrelated(project, monkeypatch):
    edit(project, "helpers.py", "return x + 1", "return x + 2  # changed")


MATRIX: dict[str, tuple[Callable[..., None], dict[str, str]]] = {
    # (the edit, the outcomes of the next session)
    "helper-imported-only-by-pretrain": (_helper, rerun("pretrain", "finetune", "evaluate")),
    "comments-whitespace-docstrings": (_cosmetic, ALL_HITS),
    "finetune-param": (_finetune_param, rerun("finetune", "evaluate")),
    "pretrain-seed": (_seed, rerun("pretrain", "finetune", "evaluate")),
    "numpy-version": (_numpy_version, ALL_STORED),
    "test-file-only": (_test_file, ALL_HITS),
    # declared by prepare and finetune; their outputs do not change: the others stay hits
    "thread-count-variable": (_threads, rerun("prepare", "finetune")),
    "unrelated-function-in-helper-module": (_unrelated, ALL_HITS),
}


@pytest.mark.parametrize("case", list(MATRIX))
def test_invalidation_matrix(project, monkeypatch, case):
    change, expected = MATRIX[case]
    before = warm(project)
    change(project, monkeypatch)
    assert session(project) == expected
    events = {e["stage"]: e for e in stage_events(project.path)}
    for name, outcome in expected.items():
        if outcome == "hit":  # the same entry, sealed under the same key
            assert events[name]["key"] == before[name]["key"]
            assert events[name]["envelope_sha256"] == before[name]["envelope_sha256"]
        else:
            assert events[name]["key"] != before[name]["key"]
    # the ledger says the same as the record
    leaves = ledger_stage_leaves(project.path)
    latest = [leaf for leaf in leaves if leaf["run_id"] == leaves[-1]["run_id"]]
    assert {leaf["stage"]: leaf["outcome"] for leaf in latest} == expected


def test_upstream_stages_enter_every_sessions_keys(project):
    """The warm session (the conftest imported afresh in one process) sees the same
    upstream stages as the cold one: a re-imported ``StageResult`` is still a stage."""
    assert session(project) == ALL_STORED
    cold = {e["stage"]: e["upstream"] for e in stage_events(project.path)}
    assert session(project) == ALL_HITS
    warm_upstream = {e["stage"]: e["upstream"] for e in stage_events(project.path)}
    assert cold == warm_upstream == {
        "prepare": [],
        "pretrain": ["prepare"],
        "finetune": ["prepare", "pretrain"],
        "evaluate": ["finetune", "prepare", "pretrain"],
    }


# -- 2. refusals, 3 of 3 ----------------------------------------------------------------------


def test_a_flipped_byte_in_a_cached_object_is_refused_and_re_executed(project, capsys):
    before = warm(project)
    digest = before["pretrain"]["outputs"]["w"]
    obj = store(project) / "objects" / digest[:2] / f"{digest}.npy"
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01
    obj.write_bytes(bytes(data))
    status, err = verify(project, capsys)
    assert status == EXIT_SEAL
    assert f"entries/pretrain/{before['pretrain']['key']}.dsse.json" in err
    assert "output w: bytes hash to sha256" in err

    assert session(project) == {**ALL_HITS, "pretrain": "refused"}
    events = {e["stage"]: e for e in stage_events(project.path)}
    assert events["pretrain"]["reason"].startswith("output w: bytes hash to sha256 ")
    assert f"the entry seals {digest[:12]}" in events["pretrain"]["reason"]
    assert events["pretrain"]["outputs"] == before["pretrain"]["outputs"]  # re-executed
    assert "fatal" not in events["pretrain"]  # outside CI: refused, not fatal
    assert len(list((store(project) / "refused" / "pretrain").iterdir())) == 1
    # the re-execution repaired the object: the next session hits everything
    assert obj.read_bytes() != bytes(data)
    assert session(project) == ALL_HITS
    assert verify(project, capsys)[0] == 0


def _keyring_line(project, name: str, out: str) -> str:
    """A key generated into ``rtgov.keyring``; its verifier line."""
    assert cli(project, "keys", "generate", name, "--out", out) == 0
    lines = (project.path / "rtgov.keyring").read_text().splitlines()
    return next(ln for ln in lines if ln.startswith(name + "+"))


@pytest.mark.parametrize("signer", ["local-key", "another-machines-key"])
def test_an_entry_signed_outside_the_keyring_fails_a_ci_session(project, monkeypatch, signer):
    if signer == "local-key":  # this machine's local key, which is in no keyring
        warm(project)
        trusted = _keyring_line(project, "ci.example/stages", "ci.key")
    else:  # a laptop's own key: trusted there, and not among the keys CI trusts
        _keyring_line(project, "laptop.example/dev", "laptop.key")
        monkeypatch.setenv("RTGOV_SIGNING_KEY", str(project.path / "laptop.key"))
        hits = warm(project)
        assert {s for e in hits.values() for s in e["signed_by"]} == {"laptop.example/dev"}
        (project.path / "rtgov.keyring").unlink()
        trusted = _keyring_line(project, "ci.example/stages", "ci.key")
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("RTGOV_TRUSTED_KEYS", trusted)
    monkeypatch.setenv("RTGOV_SIGNING_KEY", str(project.path / "ci.key"))

    result = project.runpytest("--rtgov")
    assert result.ret == EXIT_INTEGRITY == 7
    assert outcomes(project.path) == dict.fromkeys(STAGES, "refused")
    for event in stage_events(project.path):
        assert event["fatal"] is True
        assert event["reason"].startswith("not signed by a key of the keyring")
    result.stderr.fnmatch_lines(
        ["*stage prepare: cache entry refused where signatures are required: not signed*"]
    )
    # re-executed and sealed with the CI key: the next CI session trusts every entry
    assert session(project) == ALL_HITS
    assert {s for e in stage_events(project.path) for s in e["signed_by"]} == {
        "ci.example/stages"
    }


def test_a_validly_signed_entry_from_another_run_is_refused(project, capsys):
    first = warm(project)
    old_key = first["finetune"]["key"]
    old_entry = store(project) / "entries" / "finetune" / f"{old_key}.dsse.json"
    _finetune_param(project, None)
    assert session(project) == rerun("finetune", "evaluate")
    second = {e["stage"]: e for e in stage_events(project.path)}
    new_key = second["finetune"]["key"]
    # another run's envelope, signed by the same trusted key, put in this key's place
    (store(project) / "entries" / "finetune" / f"{new_key}.dsse.json").write_bytes(
        old_entry.read_bytes()
    )
    status, err = verify(project, capsys)
    assert status == EXIT_SEAL and f"entries/finetune/{new_key}.dsse.json" in err

    assert session(project) == {**ALL_HITS, "finetune": "refused"}
    refused = {e["stage"]: e for e in stage_events(project.path)}["finetune"]
    assert refused["reason"] == f"the entry seals key {old_key[:12]}, not {new_key[:12]}"
    assert refused["outputs"] == second["finetune"]["outputs"]  # re-executed, not served
    assert session(project) == ALL_HITS
    assert verify(project, capsys)[0] == 0


def test_an_artifact_swapped_in_from_another_run_is_refused(project):
    """The object behind an entry replaced by a valid array of another run."""
    first = warm(project)
    _seed(project, None)
    assert session(project) == rerun("pretrain", "finetune", "evaluate")
    other = {e["stage"]: e for e in stage_events(project.path)}["pretrain"]["outputs"]["w"]
    edit(project, "conftest.py", '{"init": 8}', '{"init": 7}')  # back to the first run's
    mine = first["pretrain"]["outputs"]["w"]
    objects = store(project) / "objects"
    (objects / mine[:2] / f"{mine}.npy").write_bytes(
        (objects / other[:2] / f"{other}.npy").read_bytes()
    )

    assert session(project) == {**ALL_HITS, "pretrain": "refused"}
    reason = {e["stage"]: e for e in stage_events(project.path)}["pretrain"]["reason"]
    assert reason == f"output w: bytes hash to sha256 {other[:12]}, the entry seals {mine[:12]}"


# -- 3. early cutoff --------------------------------------------------------------------------


def test_an_output_identical_re_execution_keeps_dependents_cached(project):
    before = warm(project)
    (store(project) / "entries" / "pretrain" / f"{before['pretrain']['key']}.dsse.json").unlink()
    assert session(project) == {**ALL_HITS, "pretrain": "stored"}
    after = {e["stage"]: e for e in stage_events(project.path)}
    assert after["pretrain"]["outputs"] == before["pretrain"]["outputs"]


def test_an_output_neutral_code_change_keeps_dependents_cached(project):
    before = warm(project)
    edit(project, "conftest.py", "w = rng.normal(size=3) * 0.1", "w0 = rng.normal(size=3) * 0.1")
    edit(project, "conftest.py", '{"w": w + features', '{"w": w0 + features')
    assert session(project) == {**ALL_HITS, "pretrain": "stored"}
    after = {e["stage"]: e for e in stage_events(project.path)}
    assert after["pretrain"]["key"] != before["pretrain"]["key"]
    assert after["pretrain"]["outputs"] == before["pretrain"]["outputs"]
    assert after["finetune"]["key"] == before["finetune"]["key"]


# -- 4. a stage that edits its own dependency while it runs -----------------------------------

SELF_EDIT = """\
    features = helpers.scale(prepare["x"])
    if os.environ.get("PRETRAIN_EDITS_HELPER"):
        source = Path(helpers.__file__)
        source.write_text(source.read_text().replace("x * 2.0", "x * 2.5"))
"""


def test_a_stage_editing_its_own_dependency_is_not_cached(project, monkeypatch):
    imports = "import os\nfrom pathlib import Path\n\nimport numpy as np\n"
    edit(project, "conftest.py", "import numpy as np\n", imports)
    edit(project, "conftest.py", '    features = helpers.scale(prepare["x"])\n', SELF_EDIT)
    monkeypatch.setenv("PRETRAIN_EDITS_HELPER", "1")
    assert session(project) == {**ALL_STORED, "pretrain": "miss"}
    event = {e["stage"]: e for e in stage_events(project.path)}["pretrain"]
    assert event["reason"] == (
        "not cached: input code helpers.py::scale changed while the stage ran"
    )
    assert not (store(project) / "entries" / "pretrain").exists()
    leaf = [leaf for leaf in ledger_stage_leaves(project.path) if leaf["stage"] == "pretrain"]
    assert leaf[-1]["outcome"] == "miss" and "helpers.py::scale" in leaf[-1]["reason"]

    monkeypatch.delenv("PRETRAIN_EDITS_HELPER")
    # the next session runs it again (with the edited helper: its dependents follow)
    assert session(project) == rerun("pretrain", "finetune", "evaluate")
    assert session(project) == ALL_HITS


# -- 5. under pytest-xdist ---------------------------------------------------------------------


def test_two_workers_compute_a_stage_once(project, capsys):
    pytest.importorskip("xdist")
    project.makepyfile(
        test_model="""\
        def test_one(evaluate):
            assert evaluate["mse"].shape == (1,)

        def test_two(evaluate):
            assert evaluate["mse"].shape == (1,)
        """
    )
    result = project.runpytest_subprocess("--rtgov", "-n", "2", "--dist", "load")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    events = stage_events(project.path)
    record = json.loads(
        (project.path / ".rtgov" / "runs" / f"{_latest(project)}.json").read_text()
    )
    for name in STAGES:
        (fixture,) = [f for f in record["fixtures"] if f["name"] == name]
        assert sorted(s["worker"] for s in fixture["setups"]) == ["gw0", "gw1"]
        assert sorted(s["stage"]["outcome"] for s in fixture["setups"]) == ["hit", "stored"]
    assert len({e["key"] for e in events if e["stage"] == "evaluate"}) == 1
    assert len(list((store(project) / "entries" / "evaluate").iterdir())) == 1
    leaves = ledger_stage_leaves(project.path)
    assert sorted(leaf["outcome"] for leaf in leaves) == ["hit"] * 4 + ["stored"] * 4
    capsys.readouterr()
    assert cli(project, "verify") == 0


def _latest(project) -> str:
    return (project.path / ".rtgov" / "latest").read_text().strip()


# -- 6. rechecks --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("names", "rechecked"), [("pretrain", ["pretrain"]), ("all", list(STAGES))]
)
def test_recheck_of_a_deterministic_stage(project, names, rechecked):
    before = warm(project)
    entries = entry_files(project)
    expected = {name: "recheck" if name in rechecked else "hit" for name in STAGES}
    assert session(project, "--rtgov-stage-recheck", names) == expected
    events = {e["stage"]: e for e in stage_events(project.path)}
    for name in rechecked:
        assert events[name]["reason"] == "re-executed: outputs identical to the entry"
        assert "finding" not in events[name]
        assert events[name]["outputs"] == before[name]["outputs"]
    assert entry_files(project) == entries


NOISE = {  # finetune's weights, made to depend on something outside its key
    "os.urandom": """\
    w = pretrain["w"].copy()
    w = w + np.frombuffer(os.urandom(24), dtype=np.uint64) * 1e-30
""",
    "a-counter-file": """\
    w = pretrain["w"].copy()
    counter = os.path.join(os.path.dirname(__file__), "counter.txt")
    count = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
    open(counter, "w").write(str(count))
    w = w + count * 1e-9
""",
}


@pytest.mark.parametrize("source", list(NOISE))
def test_recheck_of_a_nondeterministic_stage_is_a_finding(project, capsys, source):
    edit(project, "conftest.py", "import numpy as np\n", "import os\n\nimport numpy as np\n")
    edit(project, "conftest.py", '    w = pretrain["w"].copy()\n', NOISE[source])
    before = warm(project)  # one key, one value: the warm session hits it
    entries = entry_files(project)
    objects = sorted((store(project) / "objects").rglob("*.npy"))
    cached = before["finetune"]["outputs"]["w"]

    result = project.runpytest("--rtgov", "--rtgov-stage-recheck", "finetune")
    assert result.ret == EXIT_GATE_BREACHED == 6
    assert outcomes(project.path) == {**ALL_HITS, "finetune": "recheck"}
    event = {e["stage"]: e for e in stage_events(project.path)}["finetune"]
    finding = event["finding"]
    match = re.fullmatch(
        r"nondeterministic: stage finetune under key (\w{12}): "
        r"w: sha256:(\w{12}) vs sha256:(\w{12}) \(cached vs re-executed\)",
        finding,
    )
    assert match, finding
    assert match[1] == before["finetune"]["key"][:12]
    assert match[2] == cached[:12] and match[3] != cached[:12]
    result.stderr.fnmatch_lines([f"*stage finetune: {finding}*"])
    # never a second value: the entry and the objects are as they were; dependents got
    # the cached value (evaluate hit under its old key)
    assert event["outputs"]["w"] == cached
    assert entry_files(project) == entries
    assert sorted((store(project) / "objects").rglob("*.npy")) == objects
    assert verify(project, capsys)[0] == 0
