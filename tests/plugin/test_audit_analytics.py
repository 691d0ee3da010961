"""The analytics are replayable (issue 16, 6): ``rtgov compare`` and ``rtgov graph query``
print byte-identical output before and after the derived index is deleted (it is rebuilt
from the ledger), and ``rtgov audit --since`` audits only what came after a checkpoint."""

from __future__ import annotations

import shutil

import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from tests.plugin._cli import cli
from tests.plugin.test_index_trust import SUITE, _own_log_handlers  # noqa: F401 (autouse)

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
max_regression_pct = 1
"""

QUERIES = (
    ("compare", "baseline", "latest", "--all"),
    ("compare", "baseline", "latest", "--all", "--format", "json"),
    ("graph", "query", "top-regressions"),
    ("graph", "query", "first-regression"),
    ("graph", "query", "series", "test_suite.py::test_accuracy", "val_accuracy"),
    ("graph", "query", "series", "test_suite.py::test_accuracy", "val_accuracy", "--format",
     "json"),
    ("graph", "query", "lineage", "baseline"),
)


@pytest.fixture
def history(pytester):
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    for accuracy, expected in (("0.95", 0), ("0.96", 0), ("0.5", EXIT_GATE_BREACHED)):
        pytester.path.joinpath("acc.txt").write_text(accuracy)
        assert pytester.runpytest("--rtgov-gate", "-p", "no:cacheprovider").ret == expected
    return pytester


def outputs(pytester, capsys) -> dict[tuple[str, ...], str]:
    capsys.readouterr()
    got = {}
    for query in QUERIES:
        assert cli(pytester, *query) in (0, EXIT_GATE_BREACHED), query
        got[query] = capsys.readouterr().out
    return got


def test_compare_and_graph_queries_are_byte_identical_on_an_index_rebuilt_from_the_ledger(
    history, capsys
):
    before = outputs(history, capsys)
    assert "first bad run" in before[("graph", "query", "first-regression")]
    assert all(before.values())
    index = history.path / ".rtgov" / "index"
    assert index.is_dir()
    shutil.rmtree(index)
    after = outputs(history, capsys)
    assert index.is_dir()  # rebuilt from the ledger
    for query in QUERIES:
        assert after[query] == before[query], query


def test_audit_since_a_checkpoint_audits_only_the_runs_after_it(history, capsys):
    checkpoints = sorted((history.path / ".rtgov" / "ledger" / "checkpoints").glob("*.txt"))
    assert len(checkpoints) == 3  # one per session
    capsys.readouterr()
    assert cli(history, "audit", "--since", str(checkpoints[1])) == 0
    out = capsys.readouterr().out
    assert "rtgov audit: OK: 1 gated runs, 1 re-derived" in out
    assert "re-derived: breached (exit 6)" in out
    assert cli(history, "audit", "--since", "0") == 0
    assert "OK: 3 gated runs, 3 re-derived" in capsys.readouterr().out
    assert cli(history, "audit", "--since", "100000") == 2
    assert "covers" in capsys.readouterr().err


def test_runs_without_inputs_are_listed_and_fail_only_under_strict(history, capsys):
    """An older session's record has no ``inputs``: rebuilt without them here."""
    import json

    from tests.plugin.test_audit import _rewrite

    state = history.path / ".rtgov"
    records = [json.loads(path.read_text()) for path in (state / "runs").glob("*.json")]
    first = min(records, key=lambda r: r["started_at"])["run_id"]  # ids tie within a second

    def older(data: dict) -> None:
        del data["inputs"]

    _rewrite(history.path, first, older)
    capsys.readouterr()
    assert cli(history, "audit") == 0
    out = capsys.readouterr().out
    assert f"{first} (verdict leaf 6): not auditable (no inputs recorded" in out
    assert "3 gated runs, 2 re-derived, 0 not re-derived, 1 not auditable" in out
    assert cli(history, "audit", "--strict") == 7
    assert "(--strict: a failure)" in capsys.readouterr().out
    assert json.loads((state / "runs" / f"{first}.json").read_text()).get("inputs") is None


def test_a_missing_or_corrupt_input_is_a_finding_not_a_traceback(history, capsys):
    import json

    state = history.path / ".rtgov"
    records = [json.loads(p.read_text()) for p in sorted((state / "runs").glob("*.json"))]
    gates = records[0]["inputs"]["gates"].removeprefix("sha256:")
    (state / "objects" / gates[:2] / gates).write_bytes(b"[[gates]]\nname = 1\n")
    capsys.readouterr()
    assert cli(history, "audit") == 7
    captured = capsys.readouterr()
    assert "inputs: gates: corrupt" in captured.out and "Traceback" not in captured.err
    (state / "objects" / gates[:2] / gates).unlink()
    assert cli(history, "audit") == 7
    assert "inputs: gates: missing from the object store" in capsys.readouterr().out


def test_a_ledger_that_does_not_check_is_the_verify_code(history, capsys):
    from pytest_rtgov.store.ledger import MAGIC, Ledger, encode_frame

    ledger = Ledger(history.path / ".rtgov" / "ledger")
    log = ledger.log_path.read_bytes()
    payloads = [frame.payload for frame in ledger.frames()]
    checkpoint = ledger.checkpoint_paths()[-1]
    signed = checkpoint.read_text()
    # a leaf changed and framed again, the checkpoint not re-signed: the root differs
    payloads[0] = payloads[0].replace(b'"created_at":"2', b'"created_at":"1', 1)
    ledger.log_path.write_bytes(MAGIC + b"".join(encode_frame(p) for p in payloads))
    capsys.readouterr()
    assert cli(history, "audit") == 12
    assert "do not hash to the root" in capsys.readouterr().err
    # a flipped byte in a frame
    damaged = bytearray(log)
    damaged[len(MAGIC) + 60] ^= 0x20
    ledger.log_path.write_bytes(bytes(damaged))
    assert cli(history, "audit") == 10
    ledger.log_path.write_bytes(log)
    # a checkpoint whose signature does not verify
    body, _, signatures = signed.partition("\n\n")
    checkpoint.write_text(body.replace(body.split("\n")[1], "999", 1) + "\n\n" + signatures)
    assert cli(history, "audit") == 13
    checkpoint.write_text(signed)
    assert cli(history, "audit") == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err


def test_no_ledger_is_not_found(pytester, capsys):
    assert cli(pytester, "audit") == 3
    assert "no ledger" in capsys.readouterr().err
