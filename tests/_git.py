"""One git helper for tests that build repositories: a fixed identity, errors raised."""

from __future__ import annotations

import subprocess
from pathlib import Path


def git(cwd: Path | str, *args: str) -> str:
    """Run ``git *args`` in ``cwd`` as a test identity; its stripped stdout."""
    return subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
        cwd=cwd,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
