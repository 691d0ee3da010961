"""store/files.py: temporaries of interrupted atomic writes are listed and swept, safely."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pytest_rtgov.store import files
from pytest_rtgov.store.files import STALE_AFTER_S, atomic_write, stale_temporaries

KILLED_WRITER = """
import os, sys
from pathlib import Path
from pytest_rtgov.store import files

os.replace = lambda *a: os._exit(9)  # killed between the write and the rename
files.atomic_write(Path(sys.argv[1]), b"half a record")
"""


def interrupted_write(target: Path) -> Path:
    """What a writer killed mid-write leaves: its temporary, beside the target."""
    before = set(target.parent.iterdir()) if target.parent.is_dir() else set()
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], check=False)
    assert done.returncode == 9
    (left,) = set(target.parent.iterdir()) - before
    assert not target.exists()
    return left


def age(path: Path, seconds: float) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


@pytest.fixture(autouse=True)
def _forget_swept_directories(monkeypatch):
    monkeypatch.setattr(files, "_SWEPT", set())


def test_a_stale_temporary_of_a_dead_writer_is_listed_then_swept(tmp_path):
    runs = tmp_path / "runs"
    left = interrupted_write(runs / "20260101T000000Z-aaaaaa.json")
    assert stale_temporaries(tmp_path) == []  # fresh: its writer may still be at work
    age(left, STALE_AFTER_S + 60)
    assert stale_temporaries(tmp_path) == [left]  # recursive: verify lists the state dir
    assert stale_temporaries(runs, recursive=False) == [left]
    atomic_write(runs / "20260101T000001Z-bbbbbb.json", b"{}\n")  # a writer starts here
    assert not left.exists()
    assert stale_temporaries(tmp_path) == []


def test_only_our_old_temporaries_of_dead_writers_are_removed(tmp_path):
    keep = {
        ".gitignore": b"*\n",
        ".env-x.json.abcdefgh": b"old-style name: not clearly ours",
        "notes.rtgov-tmp": b"not hidden",
        f".x.json.{os.getpid()}.abcdefgh.rtgov-tmp": b"our pid: a living writer",
        ".x.json.0.abcdefgh.rtgov-tmp": b"pid 0 is no writer of ours",
        ".x.json.123.abcdefgh.rtgov-tmp.bak": b"another suffix",
    }
    for name, data in keep.items():
        (tmp_path / name).write_bytes(data)
        age(tmp_path / name, 10 * STALE_AFTER_S)
    (tmp_path / ".dir.json.999999999.abcdefgh.rtgov-tmp").mkdir()  # not a regular file
    target = tmp_path / "elsewhere.txt"
    target.write_text("x")
    link = tmp_path / ".link.json.999999999.abcdefgh.rtgov-tmp"
    link.symlink_to(target)
    assert stale_temporaries(tmp_path) == []
    atomic_write(tmp_path / "record.json", b"{}\n")
    for name, data in keep.items():
        assert (tmp_path / name).read_bytes() == data
    assert (tmp_path / ".dir.json.999999999.abcdefgh.rtgov-tmp").is_dir()
    assert link.is_symlink() and target.read_text() == "x"


def test_atomic_write_names_its_temporary_with_pid_and_suffix(tmp_path, monkeypatch):
    seen: list[str] = []
    real = os.replace

    def spy(src: str, dst: object) -> None:
        seen.append(Path(src).name)
        real(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    atomic_write(tmp_path / "a.json", b"1")
    (name,) = seen
    assert name.startswith(f".a.json.{os.getpid()}.") and name.endswith(".rtgov-tmp")
