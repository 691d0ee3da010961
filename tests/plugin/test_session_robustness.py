"""A session keeps its record whatever it meets: a state directory it cannot write,
a disk that fills up, test ids and values that are not plain text."""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pytest_rtgov.core.constants import EXIT_INTEGRITY
from tests.plugin._cli import cli

PASSING = """
def test_one():
    pass
"""



def no_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "Traceback" not in text and "INTERNALERROR" not in text, text


# -- a state directory that cannot be written: found before any test runs -------------


def test_a_state_directory_that_is_a_file_is_a_usage_error_before_the_tests(pytester):
    pytester.makepyfile(test_a=PASSING)
    (pytester.path / ".rtgov").write_text("not a directory\n")
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [f"ERROR: pytest-rtgov: state directory {pytester.path / '.rtgov'} is not usable:*"]
    )
    assert "not a directory" in result.stderr.str()
    assert "test_a.py" not in result.stdout.str()  # no test ran
    no_traceback(result)


def test_under_xdist_the_controller_checks_the_state_directory_before_any_worker(pytester):
    pytest.importorskip("xdist")
    pytester.makepyfile(test_a=PASSING)
    (pytester.path / ".rtgov").write_text("not a directory\n")
    result = pytester.runpytest_subprocess("--rtgov", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-rtgov: state directory * is not usable:*"])
    assert "created: 2/2 workers" not in result.stdout.str()
    no_traceback(result)


def test_a_runs_folder_that_is_a_file_is_named(pytester):
    pytester.makepyfile(test_a=PASSING)
    (pytester.path / ".rtgov").mkdir()
    (pytester.path / ".rtgov" / "runs").write_text("")
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{pytester.path / '.rtgov' / 'runs'}*"])
    no_traceback(result)


def _make_read_only(path: Path) -> str | None:
    """Make ``path`` refuse new files; returns how, or None where nothing can (root on a
    filesystem without the immutable attribute: permission bits do not stop root)."""
    if os.geteuid() != 0:
        path.chmod(0o555)
        return "chmod"
    chattr = shutil.which("chattr")
    if chattr and subprocess.run([chattr, "+i", str(path)], capture_output=True).returncode == 0:
        return "chattr"
    return None


def _undo_read_only(path: Path, how: str) -> None:
    if how == "chattr":
        subprocess.run(["chattr", "-i", str(path)], check=True)
    else:
        path.chmod(0o755)


@pytest.mark.parametrize("where", [".rtgov", ".rtgov/ledger"])
def test_a_read_only_state_directory_is_a_usage_error_before_the_tests(pytester, where):
    pytester.makepyfile(test_a=PASSING)
    target = pytester.path / where
    target.mkdir(parents=True)
    how = _make_read_only(target)
    if how is None:
        pytest.skip("running as root without chattr +i: root writes through any mode bits")
    try:
        result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    finally:
        _undo_read_only(target, how)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-rtgov: state directory * is not usable:*"])
    assert str(target) in result.stderr.str()
    assert "test_a.py" not in result.stdout.str()
    no_traceback(result)


def test_a_writable_state_directory_keeps_no_probe_files(pytester):
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == 0
    leftovers = [p.name for p in (pytester.path / ".rtgov").rglob("*") if "probe" in p.name]
    assert leftovers == []


# -- a disk that fills up during the tests: exit 7, nothing earlier lost -----------------

FULL_DISK_CONFTEST = """
import errno
import os

import pytest

_REAL_FSYNC = os.fsync


def _full(fd):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session):
    os.fsync = _full  # the disk filled up while the tests ran


def pytest_unconfigure(config):
    os.fsync = _REAL_FSYNC
"""


def test_a_full_disk_at_the_end_is_exit_7_naming_the_record_and_keeping_the_last_one(
    pytester, read_latest
):
    pytester.makepyfile(test_a=PASSING)
    first = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert first.ret == 0
    before = read_latest(pytester.path)
    log = pytester.path / ".rtgov" / "ledger" / "log"
    log_bytes = log.read_bytes()

    pytester.makeconftest(FULL_DISK_CONFTEST)
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert os.fsync.__name__ == "fsync"  # the inner session put it back
    assert result.ret == EXIT_INTEGRITY, result.stdout.str() + result.stderr.str()
    no_traceback(result)
    err = result.stderr.str()
    assert "pytest-rtgov: could not write the run record" in err
    assert str(pytester.path / ".rtgov" / "runs") in err
    assert os.strerror(errno.ENOSPC) in err
    result.stdout.fnmatch_lines(["*1 passed*"])  # pytest's own summary is still there
    # nothing earlier is lost: the last record, its pointer and the ledger are intact
    assert read_latest(pytester.path) == before
    assert log.read_bytes() == log_bytes
    assert cli(pytester, "verify") == 0


# -- text that is not valid Unicode: lone surrogates ------------------------------------
# Python keeps bytes of a file name, an argument or a variable that are not UTF-8 as lone
# surrogates (U+DC80-U+DCFF, surrogateescape); pytest keeps a parametrize id as given
# when its id escaping is switched off. None of them can be written as UTF-8.

UNESCAPED_IDS = """
[pytest]
disable_test_id_escaping_and_forfeit_all_rights_to_community_support = true
"""

SURROGATES = """
import pytest

@pytest.fixture(params=[1], ids=["\\udcea"])
def fx(request):
    return request.param

@pytest.mark.parametrize("x", [1], ids=["\\udce9"])
def test_x(x, fx, rtgov):
    rtgov.record("score", 0.5, unit="\\udceb")
"""


# pytest's id escaping, or the record's: the same text
ESCAPED_ID = "test_s.py::test_x[\\udcea-\\udce9]"


def _assert_recorded_escaped(pytester, read_latest, result) -> dict:
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    no_traceback(result)
    result.stdout.fnmatch_lines(["*1 passed*"])
    record = read_latest(pytester.path)
    (test,) = record["tests"]
    assert test["nodeid"] == ESCAPED_ID
    assert test["metrics"][0]["unit"] == "\\udceb"
    (fixture,) = [f for f in record["fixtures"] if f["name"] == "fx"]
    assert fixture["setups"][0]["requested_by"] == test["nodeid"]
    log = (pytester.path / ".rtgov" / "ledger" / "log").read_bytes()
    assert b"test_s.py::test_x[\\\\udcea-\\\\udce9]" in log  # the JSON of the escaped id
    assert (pytester.path / ".rtgov" / "report.html").is_file()
    assert cli(pytester, "verify") == 0
    return record


def test_a_test_id_that_is_not_unicode_is_recorded_escaped(pytester, read_latest):
    pytester.makeini(UNESCAPED_IDS)
    pytester.makepyfile(test_s=SURROGATES)
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider", "-p", "no:\udcff")
    record = _assert_recorded_escaped(pytester, read_latest, result)
    assert "no:\\udcff" in record["pytest_args"]


def test_arguments_variables_and_units_that_are_not_unicode_under_xdist(
    pytester, read_latest, monkeypatch
):
    pytest.importorskip("xdist")
    # xdist itself cannot send a node id or an argument that is not Unicode: pytest's
    # default escaping keeps the ids plain here; the unit and the variable are not.
    pytester.makepyfile(test_s=SURROGATES)
    monkeypatch.setenv("CUPY_CACHE_DIR", "/tmp/\udce9")
    result = pytester.runpytest_subprocess("--rtgov", "-n", "2", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    no_traceback(result)
    record = read_latest(pytester.path)
    (test,) = record["tests"]
    assert test["worker"].startswith("gw")
    assert test["nodeid"] == ESCAPED_ID
    assert test["metrics"][0]["unit"] == "\\udceb"
    assert record["environment"]["env.CUPY_CACHE_DIR"] == "/tmp/\\udce9"
    assert (pytester.path / ".rtgov" / "report.html").is_file()
    assert cli(pytester, "verify") == 0


def test_the_escape_is_reversible():
    from pytest_rtgov.core.records import escape_text, unescape_text

    for original in ("plain", "caf\u00e9", "test_\udce9.py::t[\ud800x\udfff]", "\udc80\udcff"):
        escaped = escape_text(original)
        escaped.encode("utf-8")  # always valid Unicode
        assert unescape_text(escaped) == original
    assert escape_text("test_\udce9.py") == "test_\\udce9.py"
    assert escape_text("plain") == "plain"


# -- odd input at the session end: the record is written, the message is clear ----------


def test_a_git_branch_name_that_is_not_utf8_is_recorded_escaped(pytester, read_latest):
    pytester.makepyfile(test_a=PASSING)
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=pytester.path, check=True)
    subprocess.run([*git, "commit", "-qm", "x", "--allow-empty"], cwd=pytester.path, check=True)
    subprocess.run([*git, "checkout", "-q", "-b", b"topic-\xe9"], cwd=pytester.path, check=True)
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    no_traceback(result)
    assert read_latest(pytester.path)["environment"]["git.branch"] == "topic-\\udce9"


TOO_LARGE = "metric 'big': expected a finite number, got int too large for a float*"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        # too large for a float: a clear InvalidMetricError, not an OverflowError
        ("rtgov.record('big', 10**400)", TOO_LARGE),
        ("rtgov.record('big', -(10**5000))", TOO_LARGE),
        ("rtgov.record(5, 1.0)", "invalid metric name 5: expected a letter*"),
        ("rtgov.record(b'loss', 1.0)", "invalid metric name b'loss': expected a letter*"),
        # a newline is not one of the name's characters ('$' matched before a last one)
        ("rtgov.record('loss\\n', 1.0)", "invalid metric name 'loss\\n': expected a letter*"),
    ],
    ids=["huge-int", "huge-negative-int", "int-name", "bytes-name", "newline-name"],
)
def test_odd_metrics_fail_their_test_clearly_and_the_session_is_recorded(
    pytester, read_latest, call, message
):
    pytester.makepyfile(
        f"""
        def test_odd(rtgov):
            rtgov.record("before", 1.0)
            {call}

        def test_fine(rtgov):
            rtgov.record("fine", 2.0)
        """
    )
    result = pytester.runpytest("--rtgov", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1, failed=1)
    result.stdout.fnmatch_lines([f"*InvalidMetricError: {message}"])
    # the failing test shows its own traceback; the session end none
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()
    record = read_latest(pytester.path)
    tests = {t["nodeid"].split("::")[1]: t for t in record["tests"]}
    assert tests["test_odd"]["outcome"] == "failed"
    assert [m["name"] for m in tests["test_odd"]["metrics"]] == ["before"]
    assert [m["name"] for m in tests["test_fine"]["metrics"]] == ["fine"]


GATED = """
def test_a(rtgov):
    rtgov.record("score", 1.0, higher_is_better=True)
"""

SCORE_GATE = """
[defaults]
baseline = "baseline"

[[gates]]
name = "score"
metric = "score"
tests = ["test_a.py::*"]
min = 0.5
"""


@pytest.mark.parametrize("mode", ["--rtgov", "--rtgov-gate"])
def test_a_project_folder_whose_name_is_not_utf8(pytester, read_latest, monkeypatch, mode):
    # the checkpoint's origin names the folder; the gate's notes name its baseline path
    project = pytester.path / "proj-\udce9"
    project.mkdir()
    (project / "test_a.py").write_text(GATED)
    (project / "gates.toml").write_text(SCORE_GATE)
    monkeypatch.chdir(project)
    result = pytester.runpytest(mode, "-p", "no:cacheprovider", f"--rootdir={project}")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    no_traceback(result)
    record = read_latest(project)
    assert [t["nodeid"] for t in record["tests"]] == ["test_a.py::test_a"]
    if mode == "--rtgov-gate":
        assert any("proj-\\udce9" in note for note in record["verdict"]["notes"])
    checkpoint = next((project / ".rtgov" / "ledger" / "checkpoints").iterdir())
    assert checkpoint.read_text().startswith("pytest-rtgov.local/proj-\\udce9\n")
    assert cli(pytester, "--dir", str(project / ".rtgov"), "verify") == 0


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full (ENOSPC on write)")
def test_a_json_log_on_a_full_disk_is_one_warning_not_a_traceback(pytester, read_latest):
    pytester.makepyfile(test_a=PASSING)
    result = pytester.runpytest_subprocess(
        "--rtgov", "-p", "no:cacheprovider", "--rtgov-log-json=/dev/full"
    )
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    assert "Traceback" not in result.stderr.str() and "Logging error" not in result.stderr.str()
    result.stderr.fnmatch_lines(
        ["pytest-rtgov: could not write log events to /dev/full: No space left on device*"]
    )
    assert result.stderr.str().count("could not write log events") == 1
    assert read_latest(pytester.path)["tests"][0]["outcome"] == "passed"  # the record is kept


def test_a_json_log_path_that_cannot_be_opened_is_a_usage_error(pytester, tmp_path):
    pytester.makepyfile(test_a=PASSING)
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = pytester.runpytest("--rtgov", f"--rtgov-log-json={blocker}/log.jsonl")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: --rtgov-log-json: cannot open {blocker}/log.jsonl: *"])
    no_traceback(result)


@pytest.mark.parametrize("inside", ["index/index.sqlite3", "ledger/log", "keys"])
def test_a_symlink_inside_the_state_dir_is_refused_before_writing_through_it(
    pytester: pytest.Pytester, inside: str
):
    """A link in ``.rtgov/`` carried the index's, the ledger's or a private key's writes
    to a file outside the project."""
    pytester.makepyfile(test_a="def test_one():\n    pass\n")
    assert pytester.runpytest("--rtgov").ret == 0
    outside = pytester.path.parent / f"outside-{inside.replace('/', '-')}"
    link = pytester.path / ".rtgov" / inside
    if inside == "keys":
        outside.mkdir()
        for path in link.iterdir():
            path.rename(outside / path.name)
        link.rmdir()
    else:
        link.parent.mkdir(parents=True, exist_ok=True)
        outside.write_bytes(link.read_bytes() if link.exists() else b"outside")
        link.unlink(missing_ok=True)
    before = _contents(outside)
    link.symlink_to(outside)
    result = pytester.runpytest("--rtgov")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*{inside}* is a symbolic link*"])
    assert _contents(outside) == before


def _contents(path: Path) -> object:
    if path.is_dir():
        return sorted((p.name, p.read_bytes()) for p in path.iterdir())
    return path.read_bytes()


def test_rtgov_refuses_a_state_dir_with_a_symlink_inside(pytester: pytest.Pytester, capsys):
    from tests.plugin._cli import cli

    pytester.makepyfile(test_a="def test_one():\n    pass\n")
    assert pytester.runpytest("--rtgov").ret == 0
    outside = pytester.path.parent / "outside.sqlite3"
    outside.write_bytes(b"")
    index = pytester.path / ".rtgov" / "index" / "index.sqlite3"
    index.unlink(missing_ok=True)
    index.parent.mkdir(exist_ok=True)
    index.symlink_to(outside)
    capsys.readouterr()
    assert cli(pytester, "report", "latest", "-o", "r.html") == 4
    assert "is a symbolic link inside the state directory" in capsys.readouterr().err
    assert outside.read_bytes() == b""
