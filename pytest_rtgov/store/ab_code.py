"""The baseline *code* for same-process A/B timing gates.

``export_ref`` writes the tree of a git ref into the state directory (``git archive``,
no worktree registration, cached by commit). ``load_baseline_module`` imports a test
module from that tree under a private name, with the project's own top-level
packages (``kernels`` here) resolved from the tree too, then restores ``sys.modules``
so the current code is untouched: the baseline test function keeps its baseline
globals, and calls baseline kernels, while the session goes on with the current ones.

This is asv's ``continuous`` idea done inside one process, the design that measured
best on this machine (../shared/MEASUREMENTS.md): both versions share the allocator,
memory layout and machine state of one session, round by round.
"""

from __future__ import annotations

import importlib.util
import io
import subprocess
import sys
import tarfile
from pathlib import Path
from types import ModuleType

from pytest_rtgov.errors import RtgovError

__all__ = [
    "ACCEPTED_REF",
    "AbCodeError",
    "accept_working_tree",
    "export_ref",
    "load_baseline_module",
    "project_packages",
    "resolve_ab_ref",
]

# Where an audited baseline refresh keeps the code it accepted (a local git ref).
ACCEPTED_REF = "refs/rtgov/accepted"

# Never shadowed: the measuring plugin itself must stay the current one.
_NEVER = frozenset({"pytest_rtgov", "pytest", "_pytest", "pluggy"})


class AbCodeError(RtgovError):
    """The baseline code cannot be exported or imported."""


def _git(rootdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=rootdir, capture_output=True, text=True, check=True
    ).stdout.strip()


def resolve_ab_ref(rootdir: Path, ref: str) -> str:
    """``accepted`` means the code the last baseline refresh accepted, else HEAD."""
    if ref != "accepted":
        return ref
    try:
        _git(rootdir, "rev-parse", "--verify", "--quiet", ACCEPTED_REF)
        return ACCEPTED_REF
    except (OSError, subprocess.CalledProcessError):
        return "HEAD"


def accept_working_tree(rootdir: Path) -> str:
    """Point ``refs/rtgov/accepted`` at the code as it is now, committed or not.

    ``git stash create`` makes a commit of the working tree without touching it, the
    index or the stash list; with a clean tree it prints nothing and HEAD is the code.
    """
    try:
        sha = _git(rootdir, "stash", "create", "rtgov: code accepted by a baseline refresh")
        sha = sha or _git(rootdir, "rev-parse", "HEAD")
        _git(rootdir, "update-ref", "-m", "rtgov baseline refresh", ACCEPTED_REF, sha)
        return sha
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AbCodeError(f"cannot record the accepted code in git: {detail.strip()}") from None


def export_ref(rootdir: Path, ref: str, dest: Path) -> tuple[str, Path]:
    """Export ``ref`` of the git repository at ``rootdir`` to ``dest/<sha>``."""
    try:
        sha = subprocess.run(
            ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"],
            cwd=rootdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        top = subprocess.run(
            ["git", "rev-parse", "--show-toplevel"],
            cwd=rootdir,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AbCodeError(
            f"A/B gates need the baseline code: cannot resolve git ref {ref!r} in {rootdir} "
            f"({detail.strip()})"
        ) from None
    target = dest / sha
    if (target / ".rtgov-complete").is_file():
        return sha, target / Path(rootdir).resolve().relative_to(Path(top).resolve())
    archive = subprocess.run(
        ["git", "archive", "--format=tar", sha], cwd=top, capture_output=True, check=True
    ).stdout
    target.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(target, filter="data")
    (target / ".rtgov-complete").write_text(sha + "\n")
    return sha, target / Path(rootdir).resolve().relative_to(Path(top).resolve())


def project_packages(rootdir: Path) -> set[str]:
    """Top-level modules already imported from the project (not from a virtualenv)."""
    root = rootdir.resolve()
    names = set()
    for name, module in list(sys.modules.items()):
        if "." in name or name in _NEVER:
            continue
        file = getattr(module, "__file__", None)
        if not file:
            continue
        path = Path(file).resolve()
        if path.is_relative_to(root) and not any(
            part in ("site-packages", ".venv", "venv") for part in path.relative_to(root).parts
        ):
            names.add(name)
    return names


def load_baseline_module(
    test_file: Path, rootdir: Path, baseline_root: Path, *, private_name: str
) -> ModuleType | None:
    """Import the baseline version of ``test_file``; None when it did not exist then."""
    relative = test_file.resolve().relative_to(rootdir.resolve())
    baseline_file = baseline_root / relative
    if not baseline_file.is_file():
        return None
    shadow = project_packages(rootdir)
    saved = {
        name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] in shadow
    }
    sys.path.insert(0, str(baseline_root))
    try:
        spec = importlib.util.spec_from_file_location(private_name, baseline_file)
        if spec is None or spec.loader is None:
            raise AbCodeError(f"cannot import baseline test module {baseline_file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(baseline_root))
        for name in list(sys.modules):
            if name.split(".")[0] in shadow:
                del sys.modules[name]  # the baseline copies live on in module globals
        sys.modules.update(saved)
