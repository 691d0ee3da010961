"""The README's commands run as written (issue 14, deliverable 6).

Every ``sh`` block of README.md carries a tag on the line before it saying where it is
executed, so no command can drift untested:

- ``<!-- readme-test: repository -->``: here, line by line, in a copy of this repository's
  reference workload (its tests, kernels, gates file, committed baseline and keyring) made
  a git repository, as a new user would run them after cloning; each must exit 0;
- ``<!-- first-minute: ... -->``: by ``tests/plugin/test_init.py``, from an empty project
  through ``rtgov init``;
- ``<!-- readme-test: make -->``: ``make gate`` runs in a test below, ``make test`` is
  what CI runs (``.ci/run``);
- ``<!-- readme-test: install -->``: pip installs, run by ``make install-check`` and its
  slow test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests._git import git

ROOT = Path(__file__).resolve().parents[2]
KINDS = {"repository", "new-project", "make", "install"}
BLOCK = re.compile(r"```sh\n(?P<body>.*?)```", re.S)
TAG = re.compile(r"<!-- (?:readme-test: (?P<kind>[a-z-]+)|(?P<first>first-minute):.*) -->\s*$")
# What the workload needs, as a user's clone has it (the plugin itself is installed).
PROJECT = ("gates.toml", "rtgov.keyring", "fixtures", "kernels", "tests/__init__.py",
           "tests/workload", "pyproject.toml")


def readme_blocks(text: str) -> list[tuple[str, list[str]]]:
    """``(kind, command lines)`` of every ``sh`` block, in order; a block without a tag
    is an error naming its first line."""
    blocks = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip("\n").rsplit("\n", 1)[-1]
        tag = TAG.match(before)
        kind = tag and ("new-project" if tag["first"] else tag["kind"])
        lines = [line for line in match["body"].splitlines() if line.strip()]
        if kind not in KINDS:
            raise AssertionError(
                f"README.md: the sh block starting {lines[:1]} has no "
                f"'<!-- readme-test: KIND -->' line before it (KIND one of {sorted(KINDS)})"
            )
        blocks.append((str(kind), lines))
    return blocks


def test_every_sh_block_of_the_readme_says_where_it_runs():
    kinds = [kind for kind, _ in readme_blocks((ROOT / "README.md").read_text())]
    assert "repository" in kinds and "new-project" in kinds


def _project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    for name in PROJECT:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, project / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            project.joinpath(name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, project / name)
    (project / ".gitignore").write_text(".rtgov/\n.rtgov-*/\n__pycache__/\n*.json\n")
    git(project, "init", "-q", "-b", "main")
    git(project, "add", ".")
    git(project, "commit", "-q", "-m", "the workload, as cloned")
    return project


@pytest.mark.slow
def test_the_readme_commands_run_as_written_in_a_copy_of_this_repository(tmp_path):
    project = _project(tmp_path)
    home = tmp_path / "home"
    home.mkdir()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RTGOV_", "GITHUB_", "GITLAB_", "PYTEST_")) and key != "CI"
    }
    env.update(
        HOME=str(home),
        PATH=f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}",
        OPENBLAS_NUM_THREADS="1",
        GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@example.com",
        GIT_COMMITTER_NAME="t", GIT_COMMITTER_EMAIL="t@example.com",
    )
    ran = 0
    for kind, lines in readme_blocks((ROOT / "README.md").read_text()):
        if kind != "repository":
            continue
        for line in lines:
            result = subprocess.run(
                ["bash", "-euo", "pipefail", "-c", line],
                cwd=project, env=env, capture_output=True, text=True, timeout=600,
            )
            assert result.returncode == 0, (
                f"README.md command {line!r} exited {result.returncode}:\n"
                f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
            )
            ran += 1
    assert ran >= 10


def _latest(state: Path) -> dict:
    run_id = (state / "latest").read_text().strip()
    return json.loads((state / "runs" / f"{run_id}.json").read_text())


@pytest.mark.slow
def test_make_gate_as_the_quick_start_says_then_verify(tmp_path):
    """The quick start's ``make gate``, twice (with the state directory in a temporary folder, so
    the checkout's own ``.rtgov`` is left alone), then ``rtgov verify`` of what it wrote.
    ``make test`` is what CI runs (``.ci/run``)."""
    state = tmp_path / "state"
    env = {key: value for key, value in os.environ.items() if key not in ("CI", "MAKEFLAGS")}
    venv = Path(sys.executable).parent.parent
    made = subprocess.run(
        ["make", "-C", str(ROOT), "gate", f"RTGOV_DIR={state}", f"VENV={venv}"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert made.returncode == 0, made.stdout[-3000:] + made.stderr[-3000:]
    assert f"run record: {state}/runs/" in made.stdout
    assert "rtgov stages: 0 hit, 4 executed (4 stored)" in made.stdout
    first = _latest(state)
    # issue 15's done-when: a second `make gate` serves all four stages from the cache,
    # runs none, and reaches the same verdict
    again = subprocess.run(
        ["make", "-C", str(ROOT), "gate", f"RTGOV_DIR={state}", f"VENV={venv}"],
        env=env, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    assert "rtgov stages: 4 hit, 0 executed" in again.stdout
    second = _latest(state)
    assert second["run_id"] != first["run_id"]
    outcomes = sorted(
        s["stage"]["outcome"] for f in second["fixtures"] for s in f["setups"] if "stage" in s
    )
    assert outcomes == ["hit"] * 4
    assert (second["verdict"]["status"], second["exit_status"]) == (
        first["verdict"]["status"],
        first["exit_status"],
    )
    verified = subprocess.run(
        [str(venv / "bin" / "rtgov"), "--dir", str(state), "verify"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert verified.returncode == 0, verified.stdout[-3000:] + verified.stderr[-3000:]
    # issue 16's done-when: the last session replays with every recorded checkpoint identical
    replayed = subprocess.run(
        [str(venv / "bin" / "rtgov"), "--dir", str(state), "replay", "latest"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert replayed.returncode == 0, replayed.stdout[-3000:] + replayed.stderr[-3000:]
    assert "rtgov replay: identical (exit 0)" in replayed.stdout
    assert " 0 diverged, " in replayed.stdout
