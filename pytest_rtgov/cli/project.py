"""The project around the state directory, as git sees it: whether a folder is in a work
tree, whether that repository has a commit, and whether git ignores a path; and the
refusal to write a private key where ``git add -A`` would commit it."""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.errors import InvalidOptionError

__all__ = ["GitState", "check_private_key_path", "git_state", "is_ignored"]


@dataclass(frozen=True)
class GitState:
    """``top``: the work tree's top folder (None: not in a repository, or no git);
    ``has_commit``: HEAD names a commit (a new repository has none yet)."""

    top: Path | None
    has_commit: bool

    @property
    def describe(self) -> str:
        if self.top is None:
            return "not a git repository"
        return f"git repository {self.top}" + ("" if self.has_commit else " (no commit yet)")


def _git(where: Path, *args: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", *args], cwd=where, capture_output=True, text=True, check=False, timeout=30
        )
    except (OSError, subprocess.SubprocessError):  # no git on this machine
        return None


def _existing(path: Path) -> Path:
    """The nearest folder of ``path`` that exists (git runs there)."""
    path = path.absolute()
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path.cwd()


def git_state(folder: Path) -> GitState:
    """Where ``folder`` stands with git (no git at all reads as no repository)."""
    where = _existing(folder)
    top = _git(where, "rev-parse", "--show-toplevel")
    if top is None or top.returncode != 0 or not top.stdout.strip():
        return GitState(None, False)
    head = _git(where, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
    return GitState(Path(top.stdout.strip()), head is not None and head.returncode == 0)


def is_ignored(path: Path) -> bool:
    """Whether git ignores ``path`` (which need not exist yet) in its work tree."""
    found = _git(_existing(path.parent), "check-ignore", "-q", str(path.absolute()))
    return found is not None and found.returncode == 0


def check_private_key_path(path: Path, *, force: bool) -> None:
    """Refuse (exit 2) a private key file inside a git work tree that git does not ignore,
    unless ``force``: the next ``git add -A`` would commit it."""
    top = git_state(path.parent).top
    if force or top is None or is_ignored(path):
        return
    raise InvalidOptionError(
        f"{path}: inside the git work tree {top} and not ignored by git, so `git add -A` "
        "would commit this private key; write it outside the repository or to a path git "
        "ignores (the default, DIR/keys/, is: a state directory rtgov creates ignores "
        "itself with its own .gitignore), or pass --force"
    )
