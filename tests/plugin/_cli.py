"""Run the ``rtgov`` command in-process from a project folder, as a user would."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from pytest_rtgov.cli import main as rtgov_main

__all__ = ["cli"]


def cli(where: Path | pytest.Pytester, *args: str) -> int:
    """``rtgov ARGS`` with ``where`` (a folder, or a pytester's) as the current directory;
    returns the exit status."""
    old = Path.cwd()
    os.chdir(getattr(where, "path", where))
    try:
        return rtgov_main(list(args))
    finally:
        os.chdir(old)
