"""store/paths.py: the one place the state directory, gates file, baseline and keyring
are resolved."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_rtgov.core.gates_config import GatesConfigError
from pytest_rtgov.store.paths import Paths


def test_the_cli_defaults_are_in_the_working_directory():
    where = Paths.resolve(invocation=Path())
    assert where.state_dir == Path(".rtgov")
    assert where.gates_file == Path("gates.toml")
    assert where.keyring == Path("rtgov.keyring")
    assert (where.runs_dir, where.ledger_dir, where.keys_dir) == (
        Path(".rtgov/runs"),
        Path(".rtgov/ledger"),
        Path(".rtgov/keys"),
    )


def test_a_session_takes_options_from_the_invocation_and_defaults_from_the_rootdir(tmp_path):
    root, here = tmp_path / "root", tmp_path / "root" / "sub"
    defaults = Paths.resolve(invocation=here, rootdir=root)
    assert defaults.state_dir == here / ".rtgov"
    assert defaults.gates_file == root / "gates.toml"
    assert defaults.keyring == root / "rtgov.keyring"
    given = Paths.resolve(
        invocation=here, rootdir=root, state_dir="s", gates="g.toml", keyring="/abs/k"
    )
    assert (given.state_dir, given.gates_file, given.keyring) == (
        here / "s",
        here / "g.toml",
        Path("/abs/k"),
    )


def test_the_baseline_is_relative_to_the_gates_file_and_inside_the_project(tmp_path):
    project = tmp_path / "p"
    (project / "conf").mkdir(parents=True)
    gates = project / "conf" / "gates.toml"
    gates.write_text('[defaults]\nbaseline = "../baseline"\n')
    where = Paths.resolve(invocation=project, gates=gates)
    assert where.baseline_dir().resolve() == (project / "baseline").resolve()
    assert where.baseline_dir_if_gated() == where.baseline_dir()
    gates.write_text('[defaults]\nbaseline = "../../elsewhere"\n')
    with pytest.raises(GatesConfigError, match=r"defaults\.baseline"):
        where.baseline_dir()


def test_no_gates_file_means_no_baseline_to_check(tmp_path):
    assert Paths.resolve(invocation=tmp_path).baseline_dir_if_gated() is None
