"""A user's install, checked: ``pip install`` the repository into a fresh virtual
environment in a temporary folder (no extras), then

- no top-level ``kernels`` (the reference workload stays in the repository),
- no memray, prometheus_client, opentelemetry-proto or scipy (extras or dev only),
- a tiny project gated twice with ``pytest --rtgov-gate`` (the first run records the
  baseline, the second is judged against it), and ``rtgov verify`` passes,

and prints the install's footprint as JSON: distributions installed (pip itself and
setuptools left out) and the size of site-packages. ``make install-check`` runs it; the
slow test ``tests/unit/test_install.py`` too. Standard library only: it runs with any
Python 3.10+ (``python3 tests/install_check.py [--keep]``); PyPI (or a local index) is
needed for the dependencies.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
NOT_INSTALLED = ("memray", "prometheus_client", "opentelemetry-proto", "networkx", "scipy")
TINY_TEST = '''import pytest


@pytest.mark.rtgov
def test_sum():
    assert sum(range(1000)) == 499500


def test_accuracy(rtgov):
    rtgov.record("accuracy", 0.95)
'''
TINY_GATES = '''[[gates]]
name = "sum budget"
metric = "wall_time"
tests = ["test_tiny.py::test_sum"]
max = 5.0

[[gates]]
name = "accuracy"
metric = "accuracy"
tests = ["test_tiny.py::test_accuracy"]
min = 0.9
'''


# what a fresh venv has before anything is installed: left out of the footprint
_INSTALLER = ("pip", "setuptools", "_distutils_hack", "distutils-precedence", "pkg_resources")


class CheckFailed(Exception):
    pass


def _run(args: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, check=False)


def _must(done: subprocess.CompletedProcess[str], what: str) -> None:
    if done.returncode != 0:
        raise CheckFailed(f"{what}: exit {done.returncode}\n{done.stdout}\n{done.stderr}")


def _bin(venv: Path, name: str) -> Path:
    return venv / ("Scripts" if os.name == "nt" else "bin") / name


def footprint(python: Path, cwd: Path, env: dict[str, str]) -> dict[str, object]:
    """Distributions installed (without pip and setuptools) and site-packages' size."""
    done = _run([str(python), "-m", "pip", "list", "--format=json"], cwd, env)
    _must(done, "pip list")
    names = sorted(
        d["name"] for d in json.loads(done.stdout) if d["name"] not in ("pip", "setuptools")
    )
    done = _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                cwd, env)
    site = Path(done.stdout.strip())
    size = sum(
        p.stat().st_size
        for top in site.iterdir()
        if not top.name.startswith(_INSTALLER)
        for p in ([top] if top.is_file() else top.rglob("*"))
        if p.is_file() and not p.is_symlink()
    )
    return {"distributions": len(names), "site_packages_mb": round(size / 1e6, 1),
            "names": names}


def check(work: Path, source: Path = REPO, footprint_only: bool = False) -> dict[str, object]:
    """Install ``source`` into a venv under ``work`` and check it (raises CheckFailed)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    for name in [n for n in env if n == "CI" or n.startswith("RTGOV_")]:
        del env[name]  # CI=true, or a signing key of the outer shell: a user's first run has none
    venv = work / "venv"
    _must(_run([sys.executable, "-m", "venv", str(venv)], work, env), "python -m venv")
    python = _bin(venv, "python")
    done = _run([str(python), "-m", "pip", "install", "--quiet", str(source)], work, env)
    _must(done, f"pip install {source}")
    if footprint_only:
        return footprint(python, work, env)
    for name in NOT_INSTALLED:
        if _run([str(python), "-m", "pip", "show", name], work, env).returncode == 0:
            raise CheckFailed(f"pip install {source} installed {name}: it is an extra")
    project = work / "project"
    project.mkdir()
    if _run([str(python), "-c", "import kernels"], project, env).returncode == 0:
        raise CheckFailed(f"pip install {source} installed a top-level package 'kernels'")
    (project / "test_tiny.py").write_text(TINY_TEST, encoding="utf-8")
    (project / "gates.toml").write_text(TINY_GATES, encoding="utf-8")
    for attempt in ("first (records the baseline)", "second (judged against it)"):
        done = _run([str(python), "-m", "pytest", "--rtgov-gate", "-q", "-p", "no:cacheprovider"],
                    project, env)
        _must(done, f"pytest --rtgov-gate, {attempt} run")
    _must(_run([str(_bin(venv, "rtgov")), "verify"], project, env), "rtgov verify")
    return footprint(python, work, env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO, help="what to pip install")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder")
    parser.add_argument(
        "--footprint-only", action="store_true", help="install and measure, check nothing"
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="rtgov-install-check-"))
    try:
        result = check(work, args.source, args.footprint_only)
    except CheckFailed as exc:
        print(f"install-check FAILED: {exc}", file=sys.stderr)
        return 1
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result))
    if args.footprint_only:
        return 0
    print(
        f"install-check passed: {result['distributions']} distributions, "
        f"{result['site_packages_mb']} MB of site-packages, no kernels, no memray",
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
