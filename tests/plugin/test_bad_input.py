"""Bad input never escapes: gates.toml that is not UTF-8, overflowing numbers, paths out
of the project and gates that select nothing are usage errors (exit 4) naming the file,
the place and what was expected, from ``pytest --rtgov-gate`` and ``rtgov baseline``."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.plugin._cli import cli

SUITE = """
def test_fast():
    pass
"""

GATE = """
[[gates]]
name = "fast"
metric = "wall_time"
tests = ["test_suite.py::*"]
max = "1 s"
"""


@pytest.fixture
def project(pytester):
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def write_gates(project, text: str | bytes) -> Path:
    path = project.path / "gates.toml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


def gate_session(project):
    """``pytest --rtgov-gate`` in-process; its exit status and all it printed."""
    result = project.runpytest("--rtgov-gate")
    return result.ret, "\n".join(result.outlines + result.errlines)



def assert_usage_error(project, capsys, *needles: str) -> None:
    """Exit 4 from the plugin and from ``rtgov baseline show``, both messages naming
    the gates file and every needle, and no traceback."""
    ret, output = gate_session(project)
    assert ret == 4, output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    for needle in ("gates.toml", *needles):
        assert needle in output, output
    capsys.readouterr()
    assert cli(project.path, "baseline", "show") == 4
    err = capsys.readouterr().err
    for needle in ("gates.toml", *needles):
        assert needle in err, err


def test_non_utf8_gates_file(project, capsys):
    write_gates(project, GATE.encode() + b'\n# caf\xe9 latin-1 comment\n')
    assert_usage_error(project, capsys, "line 8", "UTF-8")


@pytest.mark.parametrize(
    "threshold",
    [
        "1" + "0" * 400,  # a 401-digit integer: float() raises OverflowError
        "1e400",  # a float TOML reads as inf
        '"1e400 s"',
        "9" * 5000,  # past Python's int-string limit: tomllib raises ValueError
    ],
)
def test_overflowing_threshold(project, capsys, threshold):
    write_gates(project, GATE.replace('max = "1 s"', f"max = {threshold}"))
    place = "line 6" if len(threshold) > 4300 else "gates[0].max"
    assert_usage_error(project, capsys, place)


def test_overflowing_percentage(project, capsys):
    write_gates(project, GATE.replace('max = "1 s"', "max_regression_pct = " + "9" * 400))
    assert_usage_error(project, capsys, "gates[0].max_regression_pct", "a percentage")


def test_gate_selecting_nothing(project, capsys):
    write_gates(project, GATE.replace('tests = ["test_suite.py::*"]', "tests = []\nfixtures = []"))
    assert_usage_error(
        project, capsys, "gates[0]", "gate 'fast' must select at least one test, fixture or marker"
    )


@pytest.mark.parametrize("kind", ["climbing", "absolute", "symlink"])
def test_baseline_outside_the_project(project, capsys, kind):
    """``baseline = "../../../../etc"`` wrote four files into /etc. Here the target is a
    sibling of the project, so a regression writes into the test's own tmp dir."""
    outside = project.path.parent / f"outside-{kind}"
    outside.mkdir()
    if kind == "climbing":
        value = f"../outside-{kind}"
    elif kind == "absolute":
        value = str(outside)
    else:
        (project.path / "inside").symlink_to(outside, target_is_directory=True)
        value = "inside"
    write_gates(project, f'[defaults]\nbaseline = "{value}"\n' + GATE)
    assert_usage_error(project, capsys, "defaults.baseline", "inside the project")
    assert list(outside.iterdir()) == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (".", "the project folder"),
        ("./", "the project folder"),
        (".rtgov", "the default state directory"),
    ],
)
def test_baseline_that_is_the_project_or_the_state_dir(project, capsys, value, expected):
    """``baseline = "."`` sealed Makefile, README and the keyring as baseline files."""
    write_gates(project, f'[defaults]\nbaseline = "{value}"\n' + GATE)
    assert_usage_error(project, capsys, "defaults.baseline", expected)
    assert not (project.path / "metrics.json").exists()


def test_baseline_history_that_is_not_utf8_is_exit_4(project, capsys):
    write_gates(project, '[defaults]\nbaseline = "baseline"\n' + GATE)
    assert project.runpytest("--rtgov-gate").ret == 0
    with open(project.path / "baseline" / "refreshes.jsonl", "ab") as fh:
        fh.write(b"\xff\n")
    capsys.readouterr()
    assert cli(project.path, "baseline", "show") == 4
    err = capsys.readouterr().err
    assert "refreshes.jsonl: at line 2, byte" in err and "Traceback" not in err


def test_baseline_inside_the_project_is_fine(project):
    (project.path / "perf").mkdir()
    write_gates(project, '[defaults]\nbaseline = "perf/../perf/baseline"\n' + GATE)
    assert project.runpytest("--rtgov-gate").ret == 0
    assert any((project.path / "perf" / "baseline").glob("env-*.json"))


@pytest.mark.parametrize("content", [b'{"subjects": "caf\xe9"}', b"[]", b'{"subjects": {}}'])
def test_baseline_show_with_a_bad_baseline_file(project, capsys, content):
    write_gates(project, '[defaults]\nbaseline = "baseline"\n' + GATE)
    env_file = project.path / "baseline" / "env-0123456789abcdef.json"
    env_file.parent.mkdir()
    env_file.write_bytes(content)
    assert cli(project.path, "baseline", "show") == 4
    err = capsys.readouterr().err
    assert "baseline/env-0123456789abcdef.json: at " in err and "expected" in err


@pytest.mark.parametrize("pattern", ["/**/test_*.py::*", "../../**/test_*.py::*"])
def test_a_test_glob_outside_the_rootdir(project, pattern):
    """Node ids are relative to the rootdir: a file part that is absolute or climbs out
    was globbed over the whole file system (``/**``) before any test ran."""
    write_gates(project, GATE.replace('"test_suite.py::*"', f'"{pattern}"'))
    ret, output = gate_session(project)
    assert ret == 4, output
    assert "gates[0].tests[0]" in output and "relative to the rootdir" in output


# -- key and keyring files that are not UTF-8 ---------------------------------------------


def test_a_keyring_that_is_not_utf8_is_exit_4_naming_line_and_byte(project, capsys):
    project.runpytest("--rtgov").assert_outcomes(passed=1)
    (project.path / "rtgov.keyring").write_bytes(b"# team keys\nbad\xff key\n")
    result = project.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.outlines + result.errlines)
    assert "rtgov.keyring: line 2, byte 15: expected UTF-8 text" in text
    assert "Traceback" not in text
    capsys.readouterr()
    assert cli(project, "verify") == 4
    err = capsys.readouterr().err
    assert "rtgov.keyring: line 2, byte 15: expected UTF-8" in err and "Traceback" not in err


def test_a_signing_key_that_is_not_utf8_is_exit_4_naming_the_file(project):
    key = project.path / "ci.key"
    key.write_bytes(b"PRIVATE+KEY+\xff\n")
    key.chmod(0o600)
    result = project.runpytest("--rtgov", f"--rtgov-signing-key={key}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    text = "\n".join(result.outlines + result.errlines)
    assert "ci.key: line 1, byte 12: expected UTF-8 text" in text
    assert "Traceback" not in text
    runs = project.path / ".rtgov" / "runs"
    assert not runs.is_dir() or not list(runs.glob("*.json"))  # refused before any test
