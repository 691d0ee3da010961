"""The ``rtgov`` command reads the state directory, gates file and keyring from the
project's pytest configuration, found as pytest finds it; ``rtgov --version``."""

from __future__ import annotations

from importlib.metadata import version
from pathlib import Path

import pytest

from pytest_rtgov.cli import main as rtgov_main
from pytest_rtgov.store.pytest_config import locate

from ._cli import cli


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_addopts_state_dir_is_where_show_and_verify_look(pytester, capsys):
    pytester.makepyprojecttoml('[tool.pytest.ini_options]\naddopts = "--rtgov-dir build/rtgov"\n')
    pytester.makepyfile(test_a="def test_a():\n    pass\n")
    assert pytester.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    assert (pytester.path / "build" / "rtgov" / "latest").is_file()
    assert not (pytester.path / ".rtgov").exists()
    capsys.readouterr()
    assert cli(pytester, "show", "latest") == 0
    shown = capsys.readouterr().out
    assert "mode=record" in shown and "test_a " in shown
    assert cli(pytester, "verify") == 0
    assert "ledger intact" in capsys.readouterr().out
    sub = pytester.mkdir("sub")  # from below the rootdir, as pytest run there would
    assert cli(sub, "--dir", "../build/rtgov", "verify") == 0
    assert cli(pytester, "--dir", "elsewhere", "show", "latest") == 3  # explicit wins


def test_ini_key_is_relative_to_the_config_file_and_found_from_below(tmp_path, monkeypatch):
    _write(tmp_path / "setup.cfg", "[tool:pytest]\nrtgov_dir = state\nrtgov_gates = ci/g.toml\n")
    sub = tmp_path / "src" / "pkg"
    sub.mkdir(parents=True)
    monkeypatch.chdir(sub)
    project = locate(environ={})
    assert (project.rootdir, project.inifile) == (tmp_path, tmp_path / "setup.cfg")
    assert project.setting("rtgov_dir") == tmp_path / "state"
    assert project.setting("rtgov_gates") == tmp_path / "ci" / "g.toml"
    assert project.setting("rtgov_keyring") is None


def test_addopts_wins_over_o_over_the_ini_key_and_the_environment_comes_last(tmp_path):
    _write(
        tmp_path / "pytest.ini",
        "[pytest]\naddopts = -p no:x --rtgov-dir=a -o rtgov_gates=o.toml\n"
        "rtgov_dir = ini\nrtgov_gates = ini.toml\nrtgov_keyring = k.keyring\n",
    )
    project = locate(tmp_path, environ={"PYTEST_ADDOPTS": "--rtgov-keyring 'e v.keyring'"})
    assert project.setting("rtgov_dir") == Path("a")  # an option: the working directory's
    assert project.setting("rtgov_gates") == tmp_path / "o.toml"
    assert project.setting("rtgov_keyring") == Path("e v.keyring")
    assert locate(tmp_path, environ={}).setting("rtgov_keyring") == tmp_path / "k.keyring"


@pytest.mark.parametrize(
    ("files", "chosen"),
    [
        ({"pyproject.toml": "[project]\nname='x'\n", "tox.ini": "[pytest]\n"}, "tox.ini"),
        ({"pytest.ini": "", "pyproject.toml": "[tool.pytest.ini_options]\n"}, "pytest.ini"),
        ({"tox.ini": "[tox]\n", "setup.cfg": "[tool:pytest]\n"}, "setup.cfg"),
        ({"pyproject.toml": "[tool.pytest]\nrtgov_dir = 's'\n"}, "pyproject.toml"),
        ({"pytest.toml": "[pytest]\n", "pytest.ini": "[pytest]\n"}, "pytest.toml"),
    ],
)
def test_the_config_file_is_the_one_pytest_would_choose(pytester, tmp_path, files, chosen):
    for name, text in files.items():
        _write(tmp_path / name, text)
    assert locate(tmp_path, environ={}).inifile == tmp_path / chosen
    for name, text in files.items():
        (pytester.path / name).write_text(text)
    assert pytester.parseconfig().inipath == pytester.path / chosen


def test_without_a_config_file_the_working_directory_is_the_project(tmp_path, monkeypatch):
    project = locate(tmp_path, environ={})
    assert project.setting("rtgov_dir") is None and project.rootdir == tmp_path
    monkeypatch.chdir(tmp_path)
    overridden = locate(environ={"PYTEST_ADDOPTS": "-o rtgov_dir=x"})
    assert overridden.setting("rtgov_dir") == Path("x")  # as pytest: the working directory


def test_a_config_file_that_cannot_be_parsed_is_exit_4_naming_it(tmp_path, capsys):
    _write(tmp_path / "pyproject.toml", "[tool.pytest.ini_options\n")
    assert cli(tmp_path, "show", "latest") == 4
    assert "pyproject.toml: not valid TOML" in capsys.readouterr().err
    assert cli(tmp_path, "--dir", "s", "runs") == 0  # nothing left to read from it


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        rtgov_main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"rtgov {version('pytest-rtgov')}\n"


def test_gates_and_keyring_default_to_the_rootdir_from_below_it(tmp_path, monkeypatch):
    import argparse

    from pytest_rtgov.cli.options import apply_project_config

    _write(tmp_path / "tox.ini", "[pytest]\nrtgov_keyring = keys/ring\n")
    sub = tmp_path / "tests"
    sub.mkdir()
    monkeypatch.chdir(sub)
    monkeypatch.delenv("PYTEST_ADDOPTS", raising=False)
    args = argparse.Namespace(dir=None, gates=None, keyring=None, signing_key=Path("k"))
    apply_project_config(args)
    assert args.dir == Path(".rtgov")  # as pytest's --rtgov-dir: where it was invoked
    assert args.gates == tmp_path / "gates.toml"
    assert args.keyring == tmp_path / "keys" / "ring"
    assert args.signing_key == Path("k")  # given: kept
