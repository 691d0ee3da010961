"""Which code the A/B gates compare against: ``ab_ref`` resolved to one git commit.

:func:`resolve_ab_ref` decides, in this order (docs/gates.md, A/B limits; docs/ci.md):

1. a git ref given by ``--rtgov-ab-ref`` or by ``ab_ref`` in gates.toml: that ref;
2. ``ab_ref = "accepted"``: ``refs/rtgov/accepted``, the code the last baseline refresh
   accepted, when this clone has it;
3. ``"accepted"`` or ``"merge-base"`` in a pull-request CI job: the merge base of HEAD
   and the target branch (GitHub Actions: ``GITHUB_BASE_REF``; GitLab:
   ``CI_MERGE_REQUEST_DIFF_BASE_SHA``, else ``CI_MERGE_REQUEST_TARGET_BRANCH_NAME``),
   a usage error naming the fetch command when the clone lacks it;
4. else HEAD: only uncommitted changes are compared, and the session says so.

The choice is not silent: :meth:`AbChoice.says` is the sentence the session prints,
logs and keeps in the run record's verdict notes.

:func:`accept_code` moves the accepted code: ``--rtgov-update-baseline`` stores the code
it measured (:func:`snapshot_code` of the working tree when the session started,
committed or not) as a commit object under ``refs/rtgov/accepted``
(the user's branch, index and stash list untouched), so that the next session's A/B
reference is the accepted code and committing it later changes nothing.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, replace
from pathlib import Path

from pytest_rtgov.store.ab_code import ACCEPTED_REF, AbCodeError

__all__ = [
    "ACCEPTED",
    "ACCEPTED_REF",
    "MERGE_BASE",
    "AbChoice",
    "accept_code",
    "resolve_ab_ref",
    "snapshot_code",
]

ACCEPTED = "accepted"  # refs/rtgov/accepted, else as MERGE_BASE
MERGE_BASE = "merge-base"  # a pull request's merge base, else HEAD
REMOTE = "origin"  # the remote CI checkouts fetch the target branch from

_FETCH_HINT = (
    "check out the history (GitHub Actions: actions/checkout with fetch-depth: 0; "
    'GitLab: GIT_DEPTH: "0"), or fetch the target branch before the tests: '
    "`git fetch --no-tags {remote} +refs/heads/{branch}:refs/remotes/{remote}/{branch}`"
)


@dataclass(frozen=True, slots=True)
class AbChoice:
    """The code A/B gates compare against, and why that code."""

    ref: str  # what store.ab_code.export_ref resolves: a ref name or a commit id
    how: str  # "given", "accepted", "merge-base" or "head"
    why: str = ""  # for "merge-base": the CI variable it came from
    asked: str = ""  # what ab_ref or --rtgov-ab-ref asked for, before resolving it

    @property
    def follows_acceptance(self) -> bool:
        """Whether, in this clone, the next session compares against the code the
        next :func:`accept_code` records: ``ab_ref = "accepted"`` (the ref then
        exists, and comes first) or the accepted ref given by name."""
        return self.asked in (ACCEPTED, ACCEPTED_REF)

    def says(self, sha: str) -> str:
        """What the session tells its user (terminal, log event, verdict notes)."""
        if self.how == "accepted":
            return (
                f"A/B reference: {ACCEPTED_REF} = {sha}, the code the last baseline "
                "refresh accepted"
            )
        if self.how == "merge-base":
            return f"A/B reference: the merge base {sha} ({self.why})"
        if self.how == "head":
            return (
                f"A/B reference: HEAD = {sha} (no {ACCEPTED_REF} in this clone and not a "
                "pull-request CI job): only uncommitted changes are compared, a committed "
                "change is compared with itself; in CI gate against the target branch's "
                "merge base (docs/ci.md), or pass --rtgov-ab-ref REF"
            )
        head = " (only uncommitted changes are compared)" if self.ref == "HEAD" else ""
        return f"A/B reference: {self.ref} = {sha}, as ab_ref or --rtgov-ab-ref says{head}"


def resolve_ab_ref(
    rootdir: Path, ref: str, environ: Mapping[str, str] | None = None
) -> AbChoice:
    """The code A/B gates compare against (the order is in the module docstring).

    ``environ`` defaults to ``os.environ``. Raises :class:`AbCodeError` when a
    pull-request job's target branch or merge base is not in the clone.
    """
    return replace(_resolve(rootdir, ref, environ), asked=ref)


def _resolve(rootdir: Path, ref: str, environ: Mapping[str, str] | None) -> AbChoice:
    if ref not in (ACCEPTED, MERGE_BASE):
        return AbChoice(ref, "given")
    if ref == ACCEPTED and _has(rootdir, ACCEPTED_REF):
        return AbChoice(ACCEPTED_REF, "accepted")
    found = _pull_request_base(rootdir, os.environ if environ is None else environ)
    return found if found is not None else AbChoice("HEAD", "head")


def _pull_request_base(rootdir: Path, environ: Mapping[str, str]) -> AbChoice | None:
    """The merge base of a pull-request CI job (GitHub Actions, GitLab), else None."""
    branch = environ.get("GITHUB_BASE_REF", "").strip()
    if branch:  # set on pull_request events only
        return _merge_base(rootdir, branch, f"GITHUB_BASE_REF={branch}")
    target = environ.get("CI_MERGE_REQUEST_TARGET_BRANCH_NAME", "").strip()
    diff_base = environ.get("CI_MERGE_REQUEST_DIFF_BASE_SHA", "").strip()
    if diff_base:  # GitLab computed the merge base already
        why = f"CI_MERGE_REQUEST_DIFF_BASE_SHA, a merge request into {target or '?'}"
        if not _has(rootdir, f"{diff_base}^{{commit}}"):
            raise AbCodeError(
                "A/B gates compare a merge request with its merge base, but commit "
                f"{diff_base} (CI_MERGE_REQUEST_DIFF_BASE_SHA) is not in the clone at "
                f"{rootdir}: "
                + _FETCH_HINT.format(remote=REMOTE, branch=target or "<target branch>")
            )
        return AbChoice(diff_base, "merge-base", why)
    if target:
        return _merge_base(rootdir, target, f"CI_MERGE_REQUEST_TARGET_BRANCH_NAME={target}")
    return None


def _merge_base(rootdir: Path, branch: str, variable: str) -> AbChoice:
    """``git merge-base HEAD origin/<branch>``, or a usage error saying what to fetch."""
    tracking = f"refs/remotes/{REMOTE}/{branch}"
    hint = _FETCH_HINT.format(remote=REMOTE, branch=branch)
    if not _has(rootdir, f"{tracking}^{{commit}}"):
        raise AbCodeError(
            f"A/B gates compare a pull request with its merge base ({variable}), but the "
            f"target branch {REMOTE}/{branch} is not fetched in the clone at {rootdir}: "
            + hint
        )
    try:
        sha = _git(rootdir, "merge-base", "HEAD", tracking)
    except (OSError, subprocess.CalledProcessError):
        sha = ""
    if not sha:
        shallow = _git_or_empty(rootdir, "rev-parse", "--is-shallow-repository") == "true"
        raise AbCodeError(
            f"A/B gates compare a pull request with its merge base ({variable}), but HEAD "
            f"and {REMOTE}/{branch} have no common commit in the clone at {rootdir}"
            + (" (a shallow clone): " + hint if shallow else "")
        )
    return AbChoice(sha, "merge-base", f"`git merge-base HEAD {REMOTE}/{branch}`, {variable}")


def _git(rootdir: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=rootdir, capture_output=True, text=True, check=True
    ).stdout.strip()


def _git_or_empty(rootdir: Path, *args: str) -> str:
    try:
        return _git(rootdir, *args)
    except (OSError, subprocess.CalledProcessError):
        return ""


def _has(rootdir: Path, revision: str) -> bool:
    """Whether ``revision`` names an object in this clone."""
    return bool(_git_or_empty(rootdir, "rev-parse", "--verify", "--quiet", revision))


# The snapshot is a machine's record, not the user's commit: a fixed identity, so that
# accepting works where no git identity is configured (a CI runner).
_SNAPSHOT_IDENTITY = {
    "GIT_AUTHOR_NAME": "pytest-rtgov",
    "GIT_AUTHOR_EMAIL": "rtgov@localhost",
    "GIT_COMMITTER_NAME": "pytest-rtgov",
    "GIT_COMMITTER_EMAIL": "rtgov@localhost",
}


def snapshot_code(rootdir: Path) -> str:
    """A commit of the code as it is now, committed or not; its sha (no ref moves).

    The tracked files as they are in the working tree (staged or not, as ``git stash
    create`` takes them: untracked files are not part of it) become a tree through a
    private copy of the index, then a commit whose parent is HEAD; a tree equal to
    HEAD's is HEAD itself. It works in a repository without commits too, and touches
    neither the working tree, the index, the branch nor the stash list. Raises
    :class:`AbCodeError`.
    """
    try:
        head = _git_or_empty(rootdir, "rev-parse", "--verify", "--quiet", "HEAD^{commit}")
        index = Path(_git(rootdir, "rev-parse", "--git-path", "index"))
        index = index if index.is_absolute() else Path(rootdir) / index
        top = Path(_git(rootdir, "rev-parse", "--show-toplevel"))
        with tempfile.TemporaryDirectory(prefix="rtgov-accept-") as scratch:
            private = Path(scratch) / "index"
            if index.is_file():
                shutil.copyfile(index, private)
            env = {**os.environ, **_SNAPSHOT_IDENTITY, "GIT_INDEX_FILE": str(private)}
            _git_env(top, env, "add", "--update", "--", ".")
            tree = _git_env(top, env, "write-tree")
            if head and tree == _git(rootdir, "rev-parse", f"{head}^{{tree}}"):
                return head
            parent = ["-p", head] if head else []
            message = "rtgov: code accepted by a baseline refresh"
            return _git_env(top, env, "commit-tree", tree, *parent, "-m", message)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AbCodeError(f"cannot record the accepted code in git: {detail.strip()}") from None


def accept_code(rootdir: Path, snapshot: str | None = None) -> str:
    """Point ``refs/rtgov/accepted`` at ``snapshot`` (a :func:`snapshot_code` taken
    when the session started: the code it measured), else at the code as it is now;
    the sha. The ref keeps a reflog (``git reflog refs/rtgov/accepted``). Raises
    :class:`AbCodeError`.
    """
    sha = snapshot or snapshot_code(rootdir)
    try:
        _git(
            rootdir, "update-ref", "--create-reflog", "-m", "rtgov baseline refresh",
            ACCEPTED_REF, sha,
        )
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", "") or str(exc)
        raise AbCodeError(f"cannot record the accepted code in git: {detail.strip()}") from None
    return sha


def _git_env(cwd: Path, env: Mapping[str, str], *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=dict(env), capture_output=True, text=True, check=True
    ).stdout.strip()
