"""pytest conventions: every ``--rtgov*`` option is an ini key too, the command line wins,
options that do nothing say so, and the header names the plugin's mode."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pytest_rtgov.plugin.options import OPTIONS, render_ini_table

from ..conftest import latest_record

ROOT = Path(__file__).resolve().parents[2]
TEST = "def test_a():\n    pass\n"


@pytest.fixture
def project(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makepyfile(test_a=TEST)
    return pytester


def test_ini_keys_set_the_options_and_paths_are_relative_to_the_config_file(project):
    project.makepyprojecttoml(
        """
        [tool.pytest.ini_options]
        rtgov = "true"
        rtgov_dir = "build/rtgov"
        rtgov_memory = "rss"
        rtgov_export = ["json:build/run.json"]
        """
    )
    sub = project.mkdir("sub")
    (sub / "test_b.py").write_text(TEST)
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(sub)  # invoked below the rootdir: ini paths stay the config file's
        result = project.runpytest_inprocess("-p", "no:randomly", "--strict-config")
    assert result.ret == 0, result.stdout.str()
    assert "Unknown config option" not in result.stdout.str() + result.stderr.str()
    record = latest_record(project.path, "build/rtgov")
    assert record["memory_mode"] == "rss"
    assert (project.path / "build" / "run.json").is_file()
    assert not (sub / "build").exists() and not (sub / ".rtgov").exists()


def test_the_command_line_wins_over_the_ini_key_and_the_ini_key_over_the_default(project):
    project.makeini("[pytest]\nrtgov_dir = from-ini\nrtgov_memory = rss\n")
    result = project.runpytest("--rtgov", "--rtgov-dir", "from-cli", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str()
    assert latest_record(project.path, "from-cli")["memory_mode"] == "rss"  # ini, not auto
    assert not (project.path / "from-ini").exists()
    result = project.runpytest("--rtgov", "-p", "no:randomly")
    assert latest_record(project.path, "from-ini")["memory_mode"] == "rss"
    assert not (project.path / ".rtgov").exists()


def test_addopts_counts_as_the_command_line_and_o_overrides_an_ini_key(project):
    project.makeini("[pytest]\naddopts = --rtgov-memory tracemalloc\nrtgov_memory = rss\n")
    project.runpytest("--rtgov", "-o", "rtgov_dir=over", "-p", "no:randomly")
    assert latest_record(project.path, "over")["memory_mode"] == "tracemalloc"


@pytest.mark.parametrize(
    ("ini", "says"),
    [
        ("rtgov_memory = heap", "ini option rtgov_memory in tox.ini: invalid choice: 'heap'"),
        ("rtgov_ledger_timeout = soon", "rtgov_ledger_timeout in tox.ini: expected a number"),
        ("rtgov_export = csv:x.csv", "invalid value for --rtgov-export"),
        ("rtgov_gate = maybe", "rtgov_gate"),
    ],
)
def test_a_bad_ini_value_is_a_usage_error_naming_the_key(project, ini, says):
    project.path.joinpath("tox.ini").write_text(f"[pytest]\n{ini}\n")
    result = project.runpytest("--rtgov", "-p", "no:randomly")
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert says in output and "Traceback" not in output and "INTERNALERROR" not in output


def test_options_without_rtgov_warn_and_name_themselves(project):
    result = project.runpytest("--rtgov-dir", "x", "--rtgov-memory=rss", "-p", "no:randomly")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*RtgovOptionWarning: pytest-rtgov: --rtgov-dir, --rtgov-memory have no effect "
         "without --rtgov or --rtgov-gate*"]
    )  # fmt: skip
    assert not (project.path / "x").exists()


def test_configuration_waiting_for_rtgov_does_not_warn(project, monkeypatch):
    project.makeini("[pytest]\naddopts = --rtgov-dir build/rtgov\nrtgov_memory = rss\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--rtgov-show all")
    result = project.runpytest("--rtgov-shard", "1/1", "-p", "no:randomly")
    assert result.ret == 0
    assert "RtgovOptionWarning" not in result.stdout.str()


def test_w_error_makes_the_warning_a_usage_error_without_a_traceback(project):
    result = project.runpytest("--rtgov-show", "all", "-W", "error", "-p", "no:randomly")
    assert result.ret == 4
    output = result.stdout.str() + result.stderr.str()
    assert "--rtgov-show has no effect without --rtgov or --rtgov-gate" in output
    assert "Traceback" not in output and "INTERNALERROR" not in output
    ignored = project.runpytest(
        "--rtgov-show", "all", "-W", "error",
        "-W", "ignore::pytest_rtgov.plugin.RtgovOptionWarning", "-p", "no:randomly",
    )  # fmt: skip
    assert ignored.ret == 0


def test_the_header_names_the_mode(project):
    off = project.runpytest("-p", "no:randomly")
    off.stdout.fnmatch_lines(["rtgov: off (--rtgov records, --rtgov-gate gates)"])
    project.makefile(".toml", gates="")  # an empty gates file: nothing to gate
    gated = project.runpytest("--rtgov-gate", "--rtgov-memory", "rss", "-p", "no:randomly")
    gated.stdout.fnmatch_lines(["rtgov: gate, memory=rss, state=.rtgov, gates=gates.toml"])
    recorded = project.runpytest("--rtgov", "--rtgov-dir", "s", "-p", "no:randomly")
    recorded.stdout.fnmatch_lines(["rtgov: record, memory=auto, state=s, gates=gates.toml"])


def test_every_option_has_its_ini_key_in_pytests_help(pytester):
    result = pytester.runpytest("--help")
    text = result.stdout.str()
    flags = set(re.findall(r"^\s+(--rtgov[a-z-]*)", text, re.MULTILINE))
    assert flags == {option.flag for option in OPTIONS}
    for option in OPTIONS:
        assert re.search(rf"^\s+{option.key} \({option.ini}\):", text, re.MULTILINE), option.key


def test_docs_usage_lists_every_ini_key():
    text = (ROOT / "docs" / "usage.md").read_text(encoding="utf-8")
    assert render_ini_table() in text, (
        "docs/usage.md's ini table is stale: paste pytest_rtgov.plugin.options.render_ini_table()"
    )


def test_xdist_workers_merge_the_same_ini_settings(project):
    pytest.importorskip("xdist")
    project.makeini("[pytest]\nrtgov = true\nrtgov_dir = build/rtgov\nrtgov_memory = rss\n")
    project.makepyfile(test_b=TEST.replace("test_a", "test_b"))
    result = project.runpytest_subprocess("-n", "2", "-p", "no:randomly")
    assert result.ret == 0, result.stdout.str() + result.stderr.str()
    record = latest_record(project.path, "build/rtgov")
    assert record["memory_mode"] == "rss" and len(record["tests"]) == 2
    assert {test["worker"] for test in record["tests"]} <= {"gw0", "gw1"}
