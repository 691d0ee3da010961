"""The delta index (``<state>/index/``) is never a source of truth.

Edited values, flipped bytes, a truncated file or garbage in its place must not change
what ``rtgov compare``, ``rtgov graph query`` or ``rtgov report`` print: the index is
checked against the ledger and its own content digest before each use, and rebuilt when
either disagrees. A ledger leaf the index cannot read is a clear error, not a crash.
"""

from __future__ import annotations

import logging
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from pytest_rtgov.core.constants import EXIT_GATE_BREACHED
from pytest_rtgov.logs import LOGGER_NAME
from tests.plugin._cli import cli

SUITE = """
from pathlib import Path

def test_accuracy(rtgov):
    rtgov.record("val_accuracy", float(Path("acc.txt").read_text()), higher_is_better=True)

def test_plain():
    pass
"""

GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "accuracy"
metric = "val_accuracy"
tests = ["test_suite.py::*"]
min = 0.9
"""


@pytest.fixture(autouse=True)
def _own_log_handlers():
    """``rtgov`` adds a stderr handler per call: drop them after each test, so that a
    warning in a later test is not written to a stream an earlier test closed."""
    logger = logging.getLogger(LOGGER_NAME)
    handlers = list(logger.handlers)
    yield
    logger.handlers[:] = handlers



@pytest.fixture
def history(pytester):
    """Three gated sessions: two pass, the third breaches the accuracy gate."""
    pytester.makepyfile(test_suite=SUITE)
    pytester.makefile(".toml", gates=GATES)
    for accuracy, expected in (("0.95", 0), ("0.96", 0), ("0.5", EXIT_GATE_BREACHED)):
        pytester.path.joinpath("acc.txt").write_text(accuracy)
        assert pytester.runpytest("--rtgov-gate", "-p", "no:cacheprovider").ret == expected
    return pytester


def outputs(path: Path, capsys) -> dict[str, str]:
    """What the three commands print (and the report they write)."""
    capsys.readouterr()
    got = {}
    assert cli(path, "compare", "baseline", "latest", "--all", "--format", "json") == 0
    captured = capsys.readouterr()
    got["compare"] = captured.out
    assert cli(path, "graph", "query", "first-regression") == 0
    got["first-regression"] = capsys.readouterr().out
    series = ("series", "test_suite.py::test_accuracy", "val_accuracy")
    assert cli(path, "graph", "query", *series) == 0
    got["series"] = capsys.readouterr().out
    graph = path / "graph.json"
    assert cli(path, "graph", "export", "--format", "json", "-o", str(graph)) == 0
    got["export"] = graph.read_text(encoding="utf-8")
    assert cli(path, "report", "latest", "-o", str(path / "x.html")) == 0
    capsys.readouterr()
    got["report"] = (path / "x.html").read_text(encoding="utf-8")
    return got


def fresh(path: Path, capsys) -> dict[str, str]:
    assert cli(path, "graph", "rebuild") == 0
    return outputs(path, capsys)


def index_files(path: Path) -> list[Path]:
    """The files that hold the index's data: the sqlite file, or before it the column
    files (whose flipped bytes crashed readers with IndexError)."""
    directory = path / ".rtgov" / "index"
    database = directory / "index.sqlite3"
    return [database] if database.exists() else sorted(directory.glob("*.bin"))


def edit_values(path: Path) -> None:
    """Change every stored value and verdict, as a hand edit of the index would."""
    directory = path / ".rtgov" / "index"
    database = directory / "index.sqlite3"
    if database.exists():
        from pytest_rtgov.store.delta_index import ROW_DTYPE

        with sqlite3.connect(database) as conn:
            for pos, blob in conn.execute("SELECT pos, rows FROM runs").fetchall():
                rows = np.frombuffer(blob, dtype=ROW_DTYPE).copy()
                rows["value"] = 0.25
                rows["verdict"] = 1  # "pass"
                conn.execute("UPDATE runs SET rows = ? WHERE pos = ?", (rows.tobytes(), pos))
        return
    # The column files of the format before sqlite.
    value = directory / "value.bin"
    value.write_bytes(np.full(len(value.read_bytes()) // 8, 0.25, "<f8").tobytes())
    verdict = directory / "verdict.bin"
    verdict.write_bytes(np.full(len(verdict.read_bytes()), 1, "i1").tobytes())


def test_edited_values_in_the_index_change_no_output(history, capsys):
    expected = fresh(history.path, capsys)
    assert "first bad run" in expected["first-regression"]
    edit_values(history.path)
    got = outputs(history.path, capsys)
    for name in expected:
        assert got[name] == expected[name], name


def test_an_edit_is_named_in_a_warning_and_the_index_is_rebuilt(history, capsys):
    fresh(history.path, capsys)
    edit_values(history.path)
    assert cli(history.path, "graph", "query", "first-regression") == 0
    err = capsys.readouterr().err
    assert "index" in err and "digest" in err and "rebuilt" in err
    assert "Traceback" not in err
    assert cli(history.path, "graph", "query", "first-regression") == 0
    assert capsys.readouterr().err == ""  # rebuilt once, then trusted


def _flip(data: bytes, every: int) -> bytes:
    out = bytearray(data)
    for i in range(len(out) // 3, len(out), every):
        out[i] ^= 0x5A
    return bytes(out)


DAMAGE = {
    "flipped bytes": lambda data: _flip(data, 97),
    "flipped header": lambda data: b"\x00" * 16 + data[16:],
    "truncated": lambda data: data[: len(data) // 2],
    "emptied": lambda data: b"",
    "not a database": lambda data: b"this is not an index\n" * 50,
}


def test_a_damaged_index_file_is_rebuilt_without_a_traceback(history, capsys):
    expected = fresh(history.path, capsys)
    for damage in sorted(DAMAGE):
        for path in index_files(history.path):
            path.write_bytes(DAMAGE[damage](path.read_bytes()))
        got = outputs(history.path, capsys)
        for name in expected:
            assert got[name] == expected[name], (damage, name)


def test_an_index_that_stops_short_of_the_ledger_catches_up(history, capsys):
    """A session that ends without a report leaves the index behind: the next reader
    reads the frames it has not seen and gives what a rebuild gives."""
    expected = fresh(history.path, capsys)
    history.path.joinpath("acc.txt").write_text("0.97")
    assert history.runpytest("--rtgov", "--rtgov-report", "off").ret == 0
    caught_up = outputs(history.path, capsys)
    assert caught_up != expected
    assert caught_up == fresh(history.path, capsys)


def _append_leaf(path: Path, payload: bytes) -> None:
    """Append one frame and sign a checkpoint over the log, as a writer would, without
    the writer's own checks on what it appends."""
    from pytest_rtgov.core.checkpoints import Checkpoint, format_checkpoint
    from pytest_rtgov.core.merkle import MerkleAccumulator
    from pytest_rtgov.core.notes import sign_note
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, encode_frame

    ledger = Ledger(path / ".rtgov" / "ledger")
    with open(ledger.log_path, "ab") as fh:
        fh.write(encode_frame(payload))
    tree = MerkleAccumulator()
    for frame in ledger.frames():
        tree.append_leaf_hash(frame.leaf_hash)
    _, latest = ledger.latest_checkpoint()
    checkpoint = Checkpoint(origin=latest.origin, size=tree.size, root_hash=tree.root())
    signer = load_signing_key(key_file=None, state_dir=path / ".rtgov").signer
    text = sign_note(format_checkpoint(checkpoint), [signer])
    sequence = len(ledger.checkpoint_paths()) + 1
    (ledger.checkpoint_dir / f"{sequence:010d}.txt").write_text(text, encoding="utf-8")


INVALID_LEAVES = [
    ([b"{not json"], "not JSON"),
    ([b'{"kind":"mystery","x":1}'], "kind"),
    ([b'{"kind":"run","run_id":"r"}', b'{"kind":"verdict","run_id":"r"}'], "verdict"),
    (
        [b'{"kind":"run","run_id":"r"}', b'{"exit_status":0,"kind":"verdict","verdict":{}}'],
        "$.",  # the key path of the first field the run record lacks
    ),
    ([b"[1,2,3]"], "object"),
    ([b'{"kind":"baseline_refresh","changes":5}'], "changes"),
]


def test_an_invalid_ledger_leaf_is_a_clear_error(history, capsys):
    state = history.path / ".rtgov"
    shutil.copytree(state, history.path / "good-state")
    for leaves, what in INVALID_LEAVES:
        shutil.rmtree(state)
        shutil.copytree(history.path / "good-state", state)
        for leaf in leaves:
            _append_leaf(history.path, leaf)
        capsys.readouterr()
        code = cli(history.path, "graph", "rebuild")
        err = capsys.readouterr().err
        assert code == 11, (leaves, err)
        assert "leaf" in err and "ledger" in err and what in err, (leaves, err)
        assert "Traceback" not in err
        # Every reader of the index says the same, and none crashes.
        assert cli(history.path, "graph", "query", "first-regression") == 11, leaves
        assert cli(history.path, "compare", "baseline", "latest") == 11, leaves
        # The report is written without history, or refused by the run lookup's own
        # check of the ledger (exit 4): never a traceback.
        code = cli(history.path, "report", "latest", "-o", str(history.path / "x.html"))
        err = capsys.readouterr().err
        assert code in (0, 4) and "Traceback" not in err, (leaves, err)


def _dump(path: Path) -> list[str]:
    from contextlib import closing

    with closing(sqlite3.connect(path / ".rtgov" / "index" / "index.sqlite3")) as conn:
        return list(conn.iterdump())


def test_a_session_after_an_edit_extends_a_rebuilt_index(history, capsys):
    """The session's report checks the index too: an edited index is rebuilt before the
    session adds its run, so what it saves is what a rebuild from the ledger makes."""
    fresh(history.path, capsys)
    edit_values(history.path)
    history.path.joinpath("acc.txt").write_text("0.97")
    result = history.runpytest("--rtgov-gate", "-p", "no:cacheprovider")
    assert result.ret == 0
    kept = _dump(history.path)
    assert sum('INSERT INTO "runs"' in line for line in kept) == 4
    assert cli(history.path, "graph", "rebuild") == 0
    assert _dump(history.path) == kept


def test_a_damaged_ledger_frame_is_an_exit_code_not_a_traceback(history, capsys):
    log = history.path / ".rtgov" / "ledger" / "log"
    data = bytearray(log.read_bytes())
    data[len(data) // 2] ^= 0xFF
    log.write_bytes(bytes(data))
    capsys.readouterr()
    assert cli(history.path, "graph", "rebuild") == 10
    err = capsys.readouterr().err
    assert "ledger damaged" in err and str(log.relative_to(history.path)) in err
    assert "Traceback" not in err
