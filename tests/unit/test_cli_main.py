"""The rtgov command line: show, runs, exit codes."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.cli import main
from pytest_rtgov.core.constants import ExitCode

EXAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "records" / "run-v1.json"


@pytest.fixture
def state(example_state: Path) -> Path:
    return example_state


def test_show_latest_as_table(state, capsys):
    assert main(["--dir", str(state), "show"]) == ExitCode.OK
    out = capsys.readouterr().out
    # the directory every node id shares is the tables' heading, once
    assert "slowest tests (medians) in tests/workload/" in out
    assert "test_kernel_perf.py::test_softmax" in out
    assert "val_accuracy" in out and "trained_model [gw0]" in out


def test_show_json_is_the_record(state, capsys):
    assert main(["--dir", str(state), "show", "latest", "--format", "json"]) == ExitCode.OK
    assert json.loads(capsys.readouterr().out) == json.loads(EXAMPLE.read_text())


def test_show_by_prefix_and_runs_listing(state, capsys):
    run_id = (state / "latest").read_text().strip()
    assert main(["--dir", str(state), "show", run_id[:10], "--format", "json"]) == ExitCode.OK
    capsys.readouterr()
    assert main(["--dir", str(state), "runs"]) == ExitCode.OK
    # No ledger here: no verdict leaf covers the record, and the listing says so.
    assert capsys.readouterr().out.splitlines() == [
        f"{run_id}  NOT IN LEDGER (no verdict leaf names it)"
    ]


def test_missing_run_exits_3(state, capsys):
    assert main(["--dir", str(state), "show", "19990101"]) == ExitCode.NOT_FOUND
    assert "no run record matches '19990101'" in capsys.readouterr().err
    assert main(["--dir", str(state / "nowhere"), "show"]) == ExitCode.NOT_FOUND


def test_corrupt_record_exits_4_naming_file_and_place(state, capsys):
    path = next((state / "runs").glob("*.json"))
    path.write_text(path.read_text()[:200])
    assert main(["--dir", str(state), "show"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert str(path) in err and "line" in err and "valid JSON" in err

    data = json.loads(EXAMPLE.read_text())
    data["tests"][0]["samples"][0]["cpu_ns"] = "fast"
    path.write_text(json.dumps(data))
    assert main(["--dir", str(state), "show"]) == ExitCode.BAD_INPUT
    assert "$.tests[0].samples[0].cpu_ns: expected an integer" in capsys.readouterr().err


def test_bad_arguments_exit_2():
    result = subprocess.run(
        [sys.executable, "-m", "pytest_rtgov.cli", "show", "--format", "xml"],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 2
    assert "invalid choice: 'xml'" in result.stderr


def test_console_script_is_installed(state):
    exe = shutil.which("rtgov", path=str(Path(sys.executable).parent))
    assert exe, "the rtgov console script is not installed next to this Python"
    argv = [exe, "--dir", str(state), "show", "--format", "json"]
    result = subprocess.run(argv, capture_output=True)
    assert result.returncode == 0 and json.loads(result.stdout)["schema"] == "rtgov.run/1"


@pytest.mark.parametrize("pointer", ["../elsewhere", "ABSOLUTE", "../../etc/passwd", "\xff"])
def test_latest_pointer_must_be_a_run_id(state, capsys, pointer):
    """``latest`` naming a file outside runs/ (relative or absolute) is refused, not followed."""
    elsewhere = state / "elsewhere.json"
    shutil.copy(EXAMPLE, elsewhere)
    if pointer == "ABSOLUTE":
        pointer = str(elsewhere.with_suffix(""))
    (state / "latest").write_bytes(pointer.encode("latin-1") + b"\n")
    assert main(["--dir", str(state), "show", "--format", "json"]) == ExitCode.BAD_INPUT
    captured = capsys.readouterr()
    assert captured.out == ""
    assert str(state / "latest") in captured.err
    assert "a run id" in captured.err


def test_non_utf8_record_exits_4_naming_file_and_place(state, capsys):
    path = next((state / "runs").glob("*.json"))
    path.write_bytes(b'{"run_id": "\xff"}\n')
    assert main(["--dir", str(state), "show"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert str(path) in err and "line 1" in err and "UTF-8" in err


def test_unreadable_record_exits_4_naming_it(state, capsys):
    """A directory where a record file should be: IsADirectoryError was a traceback."""
    bogus = state / "runs" / "20991231T000000Z-ffffff.json"
    bogus.mkdir()
    assert main(["--dir", str(state), "show", "20991231"]) == ExitCode.BAD_INPUT
    err = capsys.readouterr().err
    assert str(bogus) in err and "a readable file" in err
    assert main(["--dir", str(state), "runs"]) == ExitCode.OK
    assert "20991231T000000Z-ffffff  NOT IN LEDGER" in capsys.readouterr().out


def test_latest_is_the_ledgers_last_run_not_an_older_pointer_put_back(tmp_path, capsys):
    """The pointer is derived: rolled back to an earlier run, ``latest`` still means the
    run the ledger appended last."""
    import subprocess
    import sys

    project = tmp_path / "p"
    project.mkdir()
    (project / "test_a.py").write_text("def test_one():\n    pass\n")
    state = project / ".rtgov"
    runs = []
    for _ in range(2):
        subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "--rtgov", "-p", "no:cacheprovider"],
            cwd=project,
            check=True,
            capture_output=True,
        )
        runs.append((state / "latest").read_text().strip())
    first, last = runs  # in ledger order (ids made in one second need not sort so)
    (state / "latest").write_text(first + "\n")
    assert main(["--dir", str(state), "show", "latest", "--format", "json"]) == 0
    assert f'"run_id": "{last}"' in capsys.readouterr().out
