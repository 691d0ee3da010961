"""The baseline *code* for same-process A/B timing gates.

``export_ref`` writes the tree of a git ref into the state directory (``git archive``,
no worktree registration, cached by commit, and checked file for file against the
commit's tree before each session uses it). ``load_baseline_module`` imports a test
module from that tree under a private name, with the project's own top-level
packages (``kernels`` here) resolved from the tree too, then restores ``sys.modules``
so the current code is untouched: the baseline test function keeps its baseline
globals, and calls baseline kernels, while the session goes on with the current ones.

This is asv's ``continuous`` idea done inside one process, the design that measured
best on this machine (docs/gates.md, docs/benchmarks.md): both versions share the allocator,
memory layout and machine state of one session, round by round.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path
from types import ModuleType

from pytest_rtgov.errors import RtgovError
from pytest_rtgov.logs import log_event

__all__ = [
    "ACCEPTED_REF",
    "AbCodeError",
    "check_export",
    "export_ref",
    "load_baseline_module",
    "project_packages",
]

# Where an audited baseline refresh keeps the code it accepted (a local git ref);
# which code a session compares against is decided in store/ab_ref.py.
ACCEPTED_REF = "refs/rtgov/accepted"

# Never shadowed: the measuring plugin itself must stay the current one.
_NEVER = frozenset({"pytest_rtgov", "pytest", "_pytest", "pluggy"})


class AbCodeError(RtgovError):
    """The baseline code cannot be exported or imported."""


def _git(rootdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=rootdir, capture_output=True, text=True, check=True
    ).stdout.strip()


def _needs_repository(rootdir: Path) -> str:
    """Why no A/B gate can run here at all (no repository, no commit), and what can."""
    try:
        _git(rootdir, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.CalledProcessError):
        where = f"{rootdir} is not in one"
    else:
        try:
            _git(rootdir, "rev-parse", "--verify", "HEAD^{commit}")
            return ""
        except (OSError, subprocess.CalledProcessError):
            where = f"the repository at {rootdir} has no commit yet"
    return (
        f": A/B gates (ab = true) run the committed code beside yours, so they need a git "
        f"repository with a commit, and {where}. Commit the code first; until then gate "
        "that time without A/B: drop `ab = true` and keep max_regression_pct on metric = "
        '"cpu_time", judged against the stored baseline (what `rtgov init` writes there)'
    )


def export_ref(rootdir: Path, ref: str, dest: Path) -> tuple[str, Path]:
    """Export ``ref`` of the git repository at ``rootdir`` to ``dest/<sha>``.

    An export already there is used only after :func:`check_export` found it to be
    the commit's tree, file for file; otherwise (an edited, added or removed file) it
    is exported again, with a warning naming the file. The A/B gates compare today's
    code with this copy: a quiet edit to it would turn a regression into a pass.
    """
    try:
        sha = _git(rootdir, "rev-parse", "--verify", f"{ref}^{{commit}}")
        top = _git(rootdir, "rev-parse", "--show-toplevel")
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AbCodeError(
            f"A/B gates need the baseline code: cannot resolve git ref {ref!r} in {rootdir} "
            f"({detail.strip()})" + _needs_repository(rootdir)
        ) from None
    target = dest / sha
    subdir = Path(rootdir).resolve().relative_to(Path(top).resolve())
    if (target / _COMPLETE).is_file():
        problem = check_export(Path(top), sha, target)
        if problem is None:
            return sha, target / subdir
        message = (
            f"the A/B baseline code in {target} does not match commit {sha} ({problem}); "
            "exported it again"
        )
        log_event("ab.export_mismatch", level=logging.WARNING, path=str(target), problem=problem)
        sys.stderr.write(f"pytest-rtgov: warning: {message}\n")
    _export(Path(top), sha, target)
    problem = check_export(Path(top), sha, target)
    if problem is not None:  # export-subst, export-ignore, a smudge filter (git LFS)...
        raise AbCodeError(
            f"A/B gates need the baseline code: `git archive {sha}` does not reproduce the "
            f"commit's tree ({problem}); .gitattributes (export-subst, export-ignore, "
            "filters) changes files of the archive"
        )
    return sha, target / subdir


# Marks a finished export; the only file of an export that is not in the tree.
_COMPLETE = ".rtgov-complete"


def _export(top: Path, sha: str, target: Path) -> None:
    """``git archive`` of ``sha`` into a fresh folder, then moved to ``target`` whole,
    so that another session never sees half an export."""
    try:
        archive = subprocess.run(
            ["git", "archive", "--format=tar", sha], cwd=top, capture_output=True, check=True
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
        raise AbCodeError(f"cannot export the A/B baseline code {sha}: {detail.strip()}") from None
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fresh = Path(tempfile.mkdtemp(prefix=f".{sha}.", dir=target.parent))
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            tar.extractall(fresh, filter="data")
        (fresh / _COMPLETE).write_text(sha + "\n")
        stale = None
        if target.exists() or target.is_symlink():
            stale = Path(tempfile.mkdtemp(prefix=f".{sha}.stale.", dir=target.parent))
            target.rename(stale / "export")
        try:
            fresh.rename(target)
        except OSError:
            if not (target / _COMPLETE).is_file():
                raise
            shutil.rmtree(fresh)  # another session exported it meanwhile: checked next
    except (OSError, tarfile.TarError) as exc:
        raise AbCodeError(f"cannot export the A/B baseline code {sha} to {target}: {exc}") from None
    if stale is not None:
        shutil.rmtree(stale, ignore_errors=True)


def _git_blob_id(data: bytes, length: int) -> str:
    """The object id git gives ``data`` as a blob (``git hash-object``): SHA-1, or
    SHA-256 in a repository of that object format (ids of 64 hex digits)."""
    algorithm = hashlib.sha256 if length == 64 else hashlib.sha1
    return algorithm(b"blob %d\0" % len(data) + data, usedforsecurity=False).hexdigest()


def _tree_blobs(top: Path, sha: str) -> dict[str, str]:
    """Path -> blob id of every file and symlink of commit ``sha`` (``git ls-tree -r``)."""
    try:
        listing = subprocess.run(
            ["git", "ls-tree", "-r", "-z", "--full-tree", sha],
            cwd=top,
            capture_output=True,
            check=True,
        ).stdout
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        detail = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
        raise AbCodeError(f"cannot list the tree of commit {sha}: {detail.strip()}") from None
    blobs = {}
    for entry in listing.split(b"\0"):
        meta, _, path = entry.partition(b"\t")
        fields = meta.split(b" ")
        if len(fields) == 3 and fields[1] == b"blob":  # a submodule ("commit") is not archived
            blobs[os.fsdecode(path)] = fields[2].decode("ascii")
    return blobs


def _export_files(target: Path) -> dict[str, Path]:
    """Relative POSIX path -> path of every file and symlink under ``target``."""
    files = {}
    for folder, dirnames, filenames in os.walk(target):
        here = Path(folder)
        links = [name for name in dirnames if (here / name).is_symlink()]
        dirnames[:] = [name for name in dirnames if name not in links]
        for name in (*filenames, *links):  # a link to a folder is a file to git
            path = here / name
            files[path.relative_to(target).as_posix()] = path
    files.pop(_COMPLETE, None)
    return files


def check_export(top: Path, sha: str, target: Path) -> str | None:
    """None when the files under ``target`` are exactly the tree of commit ``sha``;
    else the first difference: ``"<path> is not in the commit"`` (a ``__pycache__``
    file too: Python would load it), ``"<path> is missing"`` or ``"<path> differs"``.

    The tree comes from git's object store (``git ls-tree``), never from a file kept
    beside the export; the files are hashed in git's blob format with hashlib, so the
    check costs one git process and one read of the export (~5 ms for 1 MB).
    """
    expected = _tree_blobs(top, sha)
    present = _export_files(target)
    extra = sorted(set(present) - set(expected))
    if extra:
        return f"{extra[0]} is not in the commit"
    missing = sorted(set(expected) - set(present))
    if missing:
        return f"{missing[0]} is missing"
    for relative in sorted(present):
        path = present[relative]
        if not path.is_symlink() and not path.is_file():  # a fifo, a device: never read
            return f"{relative} differs"
        try:
            data = os.fsencode(os.readlink(path)) if path.is_symlink() else path.read_bytes()
        except OSError as exc:
            return f"{relative} cannot be read ({exc.strerror or exc})"
        if _git_blob_id(data, len(expected[relative])) != expected[relative]:
            return f"{relative} differs"
    return None


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
    # No __pycache__ in the export: it is checked file for file against the commit,
    # and a cached .pyc is what Python would run instead of the checked source.
    dont_write_bytecode, sys.dont_write_bytecode = sys.dont_write_bytecode, True
    try:
        spec = importlib.util.spec_from_file_location(private_name, baseline_file)
        if spec is None or spec.loader is None:
            raise AbCodeError(f"cannot import baseline test module {baseline_file}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module
    finally:
        sys.dont_write_bytecode = dont_write_bytecode
        sys.path.remove(str(baseline_root))
        for name in list(sys.modules):
            if name.split(".")[0] in shadow:
                del sys.modules[name]  # the baseline copies live on in module globals
        sys.modules.update(saved)
