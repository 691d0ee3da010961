"""Which code A/B gates compare against: store.ab_ref.resolve_ab_ref on real git repos."""

from __future__ import annotations

from pathlib import Path

import pytest

from pytest_rtgov.store.ab_code import ACCEPTED_REF, AbCodeError
from pytest_rtgov.store.ab_ref import resolve_ab_ref
from tests._git import git


def commit(cwd: Path, text: str) -> str:
    (cwd / "k.py").write_text(text)
    git(cwd, "add", "k.py")
    git(cwd, "commit", "-q", "-m", text)
    return git(cwd, "rev-parse", "HEAD")


@pytest.fixture
def branched(tmp_path: Path) -> dict[str, str]:
    """base <- main (origin/main) and base <- feature (HEAD): the merge base is base."""
    git(tmp_path, "init", "-q", "-b", "main")
    shas = {"base": commit(tmp_path, "base")}
    shas["main"] = commit(tmp_path, "main moved on")
    git(tmp_path, "update-ref", "refs/remotes/origin/main", shas["main"])
    git(tmp_path, "checkout", "-q", "-b", "feature", shas["base"])
    shas["feature"] = commit(tmp_path, "a committed slowdown")
    return shas


def test_a_given_ref_is_taken_as_it_is(tmp_path, branched):
    env = {"GITHUB_BASE_REF": "main"}
    choice = resolve_ab_ref(tmp_path, "HEAD~1", env)
    assert (choice.ref, choice.how) == ("HEAD~1", "given")
    assert "only uncommitted" in resolve_ab_ref(tmp_path, "HEAD", env).says("x")


def test_outside_a_pull_request_without_accepted_ref_it_is_head_and_says_so(tmp_path, branched):
    for ref in ("accepted", "merge-base"):
        choice = resolve_ab_ref(tmp_path, ref, {})
        assert (choice.ref, choice.how) == ("HEAD", "head")
        says = choice.says(branched["feature"])
        assert f"HEAD = {branched['feature']}" in says
        assert "only uncommitted changes are compared" in says


@pytest.mark.parametrize("ref", ["accepted", "merge-base"])
def test_a_github_pull_request_is_compared_with_its_merge_base(tmp_path, branched, ref):
    choice = resolve_ab_ref(tmp_path, ref, {"GITHUB_BASE_REF": "main"})
    assert (choice.ref, choice.how) == (branched["base"], "merge-base")
    assert branched["base"] in choice.says(choice.ref)
    assert "GITHUB_BASE_REF=main" in choice.says(choice.ref)


def test_the_accepted_ref_comes_before_the_merge_base(tmp_path, branched):
    git(tmp_path, "update-ref", ACCEPTED_REF, branched["main"])
    env = {"GITHUB_BASE_REF": "main"}
    assert resolve_ab_ref(tmp_path, "accepted", env).ref == ACCEPTED_REF
    assert resolve_ab_ref(tmp_path, "merge-base", env).ref == branched["base"]


def test_a_target_branch_not_fetched_is_an_error_naming_the_fetch(tmp_path, branched):
    with pytest.raises(AbCodeError) as info:
        resolve_ab_ref(tmp_path, "accepted", {"GITHUB_BASE_REF": "release"})
    message = str(info.value)
    assert "origin/release is not fetched" in message
    assert "git fetch --no-tags origin +refs/heads/release:refs/remotes/origin/release" in message
    assert "fetch-depth: 0" in message


def test_gitlab_diff_base_sha_is_the_merge_base(tmp_path, branched):
    env = {
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": branched["base"],
    }
    choice = resolve_ab_ref(tmp_path, "accepted", env)
    assert (choice.ref, choice.how) == (branched["base"], "merge-base")
    assert "CI_MERGE_REQUEST_DIFF_BASE_SHA" in choice.says(choice.ref)


def test_gitlab_target_branch_alone_uses_git_merge_base(tmp_path, branched):
    choice = resolve_ab_ref(tmp_path, "accepted", {"CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main"})
    assert (choice.ref, choice.how) == (branched["base"], "merge-base")


def test_gitlab_diff_base_not_in_the_clone_is_an_error(tmp_path, branched):
    env = {
        "CI_MERGE_REQUEST_TARGET_BRANCH_NAME": "main",
        "CI_MERGE_REQUEST_DIFF_BASE_SHA": "0123456789abcdef0123456789abcdef01234567",
    }
    with pytest.raises(AbCodeError, match=r"is not in the clone.*GIT_DEPTH"):
        resolve_ab_ref(tmp_path, "accepted", env)


def test_no_common_history_is_an_error(tmp_path, branched):
    git(tmp_path, "checkout", "-q", "--orphan", "lonely")
    commit(tmp_path, "unrelated")
    with pytest.raises(AbCodeError, match="have no common commit"):
        resolve_ab_ref(tmp_path, "accepted", {"GITHUB_BASE_REF": "main"})
