"""``rtgov init``: from an empty project to a gated pass and a caught regression, the
README's "First minute" commands as written; what init writes and refuses; the state
directory's own .gitignore; private keys kept out of git work trees."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_rtgov.core.gates_config import parse_gates
from tests._git import git
from tests.plugin._cli import cli

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

README = Path(__file__).resolve().parents[2] / "README.md"

# A tiny numpy model: a fixture that trains (recording its loss), a test that records
# validation accuracy, and a kernel marked rtgov. EPOCHS and WORK are what the
# regressions below change.
CONFTEST = """
import numpy as np
import pytest

EPOCHS = 200


@pytest.fixture(scope="session")
def data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(float)
    return x[:400], y[:400], x[400:], y[400:]


@pytest.fixture(scope="session")
def model(data, rtgov):
    x, y, _, _ = data
    w, b = np.zeros(2), 0.0
    for _ in range(EPOCHS):
        p = 1 / (1 + np.exp(-(x @ w + b)))
        w = w - 0.5 * x.T @ (p - y) / len(y)
        b = b - 0.5 * float(np.mean(p - y))
    p = np.clip(1 / (1 + np.exp(-(x @ w + b))), 1e-9, 1 - 1e-9)
    loss = float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    rtgov.record("train_loss", loss, higher_is_better=False)
    return w, b
"""

TESTS = """
import numpy as np
import pytest

WORK = 1


def test_val_accuracy(model, data, rtgov):
    w, b = model
    _, _, x, y = data
    accuracy = float(np.mean(((x @ w + b) > 0) == y))
    rtgov.record("val_accuracy", accuracy, higher_is_better=True)


@pytest.mark.rtgov(rounds=7, warmup=1)
def test_kernel():
    a = np.linspace(0.0, 1.0, 4096)
    for _ in range(300 * WORK):
        a = np.tanh(a + 0.1)
"""


def _project(pytester: pytest.Pytester) -> Path:
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "conftest.py").write_text(CONFTEST)
    (pytester.path / "tests" / "test_model.py").write_text(TESTS)
    return pytester.path


def _set(path: Path, name: str, value: int) -> None:
    text = re.sub(rf"^{name} = \d+$", f"{name} = {value}", path.read_text(), flags=re.M)
    path.write_text(text)


def first_minute_commands() -> list[list[str]]:
    """The README's "First minute" block, after its marker, as argument lists."""
    text = README.read_text(encoding="utf-8")
    marker = text.index("<!-- first-minute:")
    block = re.search(r"```sh\n(.*?)```", text[marker:], re.S)
    assert block is not None, "README.md: no sh block after the first-minute marker"
    return [shlex.split(line, comments=True) for line in block.group(1).splitlines() if line]


def _run(pytester: pytest.Pytester, argv: list[str]) -> tuple[int, str]:
    """One README command, in-process: ``rtgov ...`` through the CLI, ``pytest ...``
    through pytester; its exit status and what it printed."""
    if argv[0] == "rtgov":
        ret = cli(pytester, *argv[1:])
        return ret, ""
    assert argv[0] == "pytest", f"README first-minute: unexpected command {argv}"
    result = pytester.runpytest(*argv[1:], "-p", "no:randomly")
    return int(result.ret), result.stdout.str()


def _first_minute_then_regressions(pytester: pytest.Pytester, *, xdist: bool) -> None:
    root = _project(pytester)
    commands = first_minute_commands()
    gated = ["pytest", "--rtgov-gate"]
    assert commands[:3] == [["rtgov", "init"], gated, gated], "init and two more commands"
    outputs = []
    for argv in commands:
        ret, out = _run(pytester, argv)
        assert ret == 0, f"{shlex.join(argv)} exited {ret}\n{out}"
        outputs.append(out)
    assert "rtgov gate: PASSED (3 checks, 0 breached, 0 unconfirmed, 3 new)" in outputs[1]
    assert "rtgov gate: PASSED (3 checks, 0 breached, 0 unconfirmed, 0 new)" in outputs[2]
    assert (root / "rtgov-baseline" / "metrics.json").is_file()
    assert "WARNING" not in outputs[2]  # the baseline's signer is in the keyring

    # A slowdown: the kernel does 6x the work (CPU time; robust beside other processes),
    # caught under xdist too (its workers measure, the controller gates).
    _set(root / "tests" / "test_model.py", "WORK", 6)
    if xdist:
        slow = pytester.runpytest_subprocess("--rtgov-gate", "-p", "no:randomly", "-n", "2")
    else:
        slow = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    assert slow.ret == 6, slow.stdout.str()
    slow.stdout.fnmatch_lines(["BREACH kernel time: tests/test_model.py::test_kernel cpu_time"])
    assert "BREACH val_accuracy" not in slow.stdout.str()

    # An accuracy drop: no training; the slowdown reverted.
    _set(root / "tests" / "test_model.py", "WORK", 1)
    _set(root / "tests" / "conftest.py", "EPOCHS", 0)
    worse = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    assert worse.ret == 6, worse.stdout.str()
    worse.stdout.fnmatch_lines(
        ["BREACH val_accuracy: tests/test_model.py::test_val_accuracy val_accuracy"]
    )
    assert "BREACH kernel time" not in worse.stdout.str()


def test_first_minute_without_git(pytester: pytest.Pytester) -> None:
    _first_minute_then_regressions(pytester, xdist=True)
    text = (pytester.path / "gates.toml").read_text()
    assert not any(g.ab for g in parse_gates(tomllib.loads(text), source="g").gates)


def test_first_minute_in_a_repository_without_commits(pytester: pytest.Pytester) -> None:
    git(pytester.path, "init", "-q", ".")
    _first_minute_then_regressions(pytester, xdist=False)
    untracked = git(pytester.path, "status", "--porcelain", "--untracked-files=all")
    # what init says to commit shows; the state directory (runs, ledger, keys) never does
    assert "?? gates.toml" in untracked and "?? rtgov.keyring" in untracked
    assert "?? rtgov-baseline/metrics.json" in untracked
    assert ".rtgov" not in untracked


def test_init_prints_the_next_commands_and_gates_what_tests_record(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(pytester)
    assert cli(pytester, "init") == 0
    out = capsys.readouterr().out
    assert "not a git repository" in out
    next_lines = out.split("Next:\n", 1)[1].splitlines()
    assert [line.split("#")[0].strip() for line in next_lines] == [
        "pytest --rtgov-gate",
        "git init && git add gates.toml rtgov.keyring rtgov-baseline",
        "rtgov verify",
    ]
    text = (root / "gates.toml").read_text()
    config = parse_gates(tomllib.loads(text), source="gates.toml")
    gates = {g.name: g for g in config.gates}
    assert config.baseline == "rtgov-baseline"
    assert gates["val_accuracy"].tests == ("tests/test_model.py::*",)
    assert gates["train_loss"].fixtures == ("model",)
    assert gates["kernel time"].markers == ("rtgov",) and not gates["kernel time"].ab
    assert (root / ".rtgov" / ".gitignore").read_text().splitlines()[-1] == "*"
    keyring = (root / "rtgov.keyring").read_text()
    assert re.search(r"^dev-[^+]+\+[0-9a-f]{8}\+", keyring, re.M), keyring
    assert "untrusted" not in keyring


def test_init_with_a_commit_writes_ab_gates(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(pytester)
    git(root, "init", "-q", ".")
    git(root, "add", "tests")
    git(root, "commit", "-q", "-m", "tests")
    assert cli(pytester, "init") == 0
    assert "\n  git add gates.toml rtgov.keyring rtgov-baseline" in capsys.readouterr().out
    gates = parse_gates(tomllib.loads((root / "gates.toml").read_text()), source="g")
    kernel = next(g for g in gates.gates if g.name == "kernel time")
    assert kernel.ab and kernel.metric == "wall_time"
    # it runs: the committed code is the A/B reference (exit 6 only for a false alarm)
    result = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    assert result.ret in (0, 6), result.stdout.str()
    assert "A/B reference: HEAD = " in result.stdout.str()


def test_init_refuses_to_overwrite_unless_forced(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    _project(pytester)
    (pytester.path / "gates.toml").write_text("# mine\n")
    assert cli(pytester, "init") == 2
    err = capsys.readouterr().err
    assert "gates.toml: already exists; refusing to overwrite it" in err and "--force" in err
    assert (pytester.path / "gates.toml").read_text() == "# mine\n"
    assert not (pytester.path / "rtgov.keyring").exists()  # nothing written at all
    assert cli(pytester, "init", "--force") == 0
    assert "[defaults]" in (pytester.path / "gates.toml").read_text()
    # a second init trusts the same key once
    assert cli(pytester, "init", "--force") == 0
    assert (pytester.path / "rtgov.keyring").read_text().count("\ndev-") == 1


def test_init_refuses_a_baseline_in_the_state_directory(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(pytester, "init", "--baseline", ".rtgov/baseline") == 2
    assert "inside the state directory" in capsys.readouterr().err
    assert not (pytester.path / "gates.toml").exists()


def test_init_from_a_recorded_run(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    root = _project(pytester)
    assert pytester.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    capsys.readouterr()
    assert cli(pytester, "init", "--from", "latest") == 0
    # the session made the local key first: init trusts it as it is, and says so
    assert "keeps its name rtgov-local-untrusted-" in capsys.readouterr().out
    assert "\nrtgov-local-untrusted-" in (root / "rtgov.keyring").read_text()
    text = (root / "gates.toml").read_text()
    assert "from\n# run " in text
    gates = {g.name: g for g in parse_gates(tomllib.loads(text), source="g").gates}
    assert gates["kernel time"].maximum is not None  # a CPU-time budget from the run
    assert gates["val_accuracy"].tests == ("tests/test_model.py::*",)
    assert pytester.runpytest("--rtgov-gate", "-p", "no:randomly").ret == 0
    capsys.readouterr()
    assert cli(pytester, "init", "--force") == 0
    out = capsys.readouterr().out
    assert "rtgov-baseline/: the baseline folder; it holds a baseline already" in out
    assert "a run is recorded here; `rtgov init --force --from latest`" in out
    assert cli(pytester, "init", "--force", "--from", "no-such-run") == 3


def test_init_without_metrics_or_marks_writes_examples(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    assert cli(pytester, "init") == 0
    text = (pytester.path / "gates.toml").read_text()
    assert parse_gates(tomllib.loads(text), source="g").gates == ()
    assert "# None found." in text and "# No test is marked @pytest.mark.rtgov" in text
    assert pytester.runpytest("--rtgov-gate", "-p", "no:randomly").ret == 0


@pytest.mark.parametrize("repository", ["none", "no-commit"])
def test_ab_gate_without_a_commit_says_what_it_needs(
    pytester: pytest.Pytester, repository: str
) -> None:
    _project(pytester)
    if repository == "no-commit":
        git(pytester.path, "init", "-q", ".")
    pytester.makefile(
        ".toml",
        gates='[[gates]]\nname = "k"\nmetric = "wall_time"\nmarkers = ["rtgov"]\n'
        "ab = true\nmax_regression_pct = 10\n",
    )
    result = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    assert result.ret == 4
    err = result.stderr.str()
    assert "they need a git repository with a commit" in err
    assert ("has no commit yet" if repository == "no-commit" else "is not in one") in err
    assert 'drop `ab = true`' in err


def test_a_session_that_creates_the_state_directory_ignores_it(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(test_plain="def test_one():\n    assert True\n")
    assert pytester.runpytest("--rtgov", "-p", "no:randomly").ret == 0
    assert (pytester.path / ".rtgov" / ".gitignore").read_text().endswith("\n*\n")
    # one that exists is left as its owner made it
    (pytester.path / "other").mkdir()
    assert pytester.runpytest("--rtgov", "--rtgov-dir", "other", "-p", "no:randomly").ret == 0
    assert not (pytester.path / "other" / ".gitignore").exists()


def test_a_command_that_creates_the_state_directory_ignores_it(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    git(pytester.path, "init", "-q", ".")
    assert cli(pytester, "keys", "generate", "ci.example.org/gates") == 0
    assert (pytester.path / ".rtgov" / ".gitignore").is_file()
    status = git(pytester.path, "status", "--porcelain", "--untracked-files=all")
    assert status.splitlines() == ["?? rtgov.keyring"]


def test_keys_generate_refuses_a_private_key_git_would_commit(
    pytester: pytest.Pytester, capsys: pytest.CaptureFixture[str]
) -> None:
    git(pytester.path, "init", "-q", ".")
    assert cli(pytester, "keys", "generate", "ci.example.org/a", "--out", "ci.key") == 2
    err = capsys.readouterr().err
    assert "ci.key: inside the git work tree" in err and "--force" in err
    assert not (pytester.path / "ci.key").exists()
    (pytester.path / ".gitignore").write_text("ci.key\n")
    assert cli(pytester, "keys", "generate", "ci.example.org/a", "--out", "ci.key") == 0
    assert cli(pytester, "keys", "generate", "ci.example.org/b", "--out", "b.key", "--force") == 0
    assert (pytester.path / "b.key").is_file()


def test_keys_generate_outside_a_repository_is_unchanged(pytester: pytest.Pytester) -> None:
    assert cli(pytester, "keys", "generate", "ci.example.org/a", "--out", "ci.key") == 0
    assert (pytester.path / "ci.key").is_file()


def test_git_is_not_needed(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    """No git program at all reads as no repository."""
    from pytest_rtgov.cli import project

    def no_git(*args: object, **kwargs: object) -> None:
        raise FileNotFoundError("git")

    monkeypatch.setattr(subprocess, "run", no_git)
    assert project.git_state(pytester.path) == project.GitState(None, False)
    assert not project.is_ignored(pytester.path / "x")


def test_the_scan_reads_what_pytest_would_collect(tmp_path: Path) -> None:
    from pytest_rtgov.cli.init_gates import render, scan_tests
    from pytest_rtgov.cli.project import GitState

    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "test_a.py").write_text(
        "import pytest, pytest_asyncio\n"
        "@pytest_asyncio.fixture(name='server')\n"
        "async def make_server(rtgov):\n"
        "    rtgov.record('latency', 1.0)\n"
        "@pytest.mark.rtgov(rounds=3)\n"
        "class TestKernels:\n"
        "    def test_k(self, rtgov):\n"
        "        rtgov.record_digest('out', b'x')\n"
        "def helper(rtgov):\n"
        "    rtgov.record('lost', 1.0, higher_is_better=True)\n"
        "def test_name(rtgov, name='x'):\n"
        "    rtgov.record(name, 1.0)\n"
        "    other.record('not_ours', 1.0)\n"
    )
    venv = tmp_path / "venv-3.11"
    venv.mkdir()
    (venv / "pyvenv.cfg").write_text("home = /usr\n")
    (venv / "test_installed.py").write_text("def test_x(rtgov):\n    rtgov.record('v', 1)\n")
    (tmp_path / "tests" / "test_broken.py").write_text("def (:\n")
    found = scan_tests(tmp_path)
    assert sorted(found.metrics) == ["latency", "lost", "out"]
    assert found.metrics["latency"].fixtures == {"server"}
    assert found.metrics["out"].digest and found.metrics["out"].tests == {"tests/test_a.py::*"}
    assert not found.metrics["lost"].tests and not found.metrics["lost"].fixtures
    assert found.marked == {"tests/test_a.py::TestKernels"}
    text = render(found, GitState(None, False), "rtgov-baseline")
    # no direction, a digest, or no test or fixture to select: commented, never a bad gate
    assert parse_gates(tomllib.loads(text), source="g").gates[0].name == "kernel time"
    assert '# name = "latency"' in text and "# exact = true" in text


def test_the_default_baseline_says_it_stays_on_this_machine(pytester: pytest.Pytester) -> None:
    """Without ``baseline`` in gates.toml it is .rtgov/baseline (kept as the default, so
    existing baselines there still gate): the run that creates it says git ignores it."""
    _project(pytester)
    pytester.makefile(
        ".toml",
        gates='[[gates]]\nname = "a"\nmetric = "val_accuracy"\n'
        'tests = ["tests/test_model.py::*"]\nmax_regression_pct = 2\n',
    )
    result = pytester.runpytest("--rtgov-gate", "-p", "no:randomly")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        ["*recorded this run as the baseline in *baseline, inside the state directory, "
         "which git ignores: no other clone gates against it*"]
    )
    assert (pytester.path / ".rtgov" / "baseline" / "metrics.json").is_file()
