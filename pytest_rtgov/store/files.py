"""Atomic file writes: temporary file, fsync, ``os.replace``, fsync of the directory.

A writer killed between its write and its rename leaves its temporary behind:
``.<name>.<pid>.<8 random characters>.rtgov-tmp`` beside the target. The first
:func:`atomic_write` of a process into a directory sweeps that directory of such
temporaries older than :data:`STALE_AFTER_S` whose writer process is gone;
:func:`stale_temporaries` lists them (``rtgov verify`` reports them as warnings).
Nothing else is ever removed: not another name, not a symlink, not a directory.
"""

from __future__ import annotations

import json
import os
import re
import stat
import tempfile
import time
from pathlib import Path
from typing import Any

from pytest_rtgov.errors import RecordFormatError

__all__ = [
    "STALE_AFTER_S",
    "atomic_write",
    "decode_json",
    "read_bytes",
    "read_json",
    "read_json_and_bytes",
    "stale_temporaries",
    "symlinks_inside",
    "utf8_text",
]

# A temporary this old is stale once its writer is gone: atomic_write holds one for
# the time of one write (milliseconds), so an hour leaves a wide margin.
STALE_AFTER_S = 3600.0
_TEMP_SUFFIX = ".rtgov-tmp"
_TEMPORARY = re.compile(r"^\..+\.([0-9]{1,10})\.[a-z0-9_]{8}" + re.escape(_TEMP_SUFFIX) + "$")
_SWEPT: set[str] = set()  # directories this process has swept


def read_json(path: Path) -> Any:
    """Decode a JSON file; a syntax error names the file, line and column.

    Bytes that are not UTF-8 are a RecordFormatError naming the line and byte too, and
    so is a file that cannot be read (a directory, no permission). A missing file
    raises FileNotFoundError, for callers that treat absence apart.
    """
    return read_json_and_bytes(path)[1]


def read_json_and_bytes(path: Path) -> tuple[bytes, Any]:
    """The file's bytes and their JSON value, with :func:`read_json`'s errors."""
    data = read_bytes(path)
    return data, decode_json(path, data)


def read_bytes(path: Path) -> bytes:
    """The file's bytes; FileNotFoundError, or a RecordFormatError naming a file that
    cannot be read (a directory, no permission)."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise RecordFormatError(
            str(path), "file", f"a readable file ({exc.strerror or exc})"
        ) from None


def decode_json(path: Path, data: bytes) -> Any:
    """``data`` (the bytes of ``path``) as JSON, with :func:`read_json`'s errors."""
    try:
        return json.loads(utf8_text(path, data))
    except json.JSONDecodeError as exc:
        raise RecordFormatError(
            str(path), f"line {exc.lineno} column {exc.colno}", f"valid JSON ({exc.msg})"
        ) from exc


def utf8_text(path: Path, data: bytes) -> str:
    """``data`` decoded as UTF-8; else a RecordFormatError naming the line and byte offset."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise RecordFormatError(
            str(path),
            f"line {line} (byte {exc.start})",
            f"UTF-8 text (byte {data[exc.start]:#04x} is not valid UTF-8 there)",
        ) from None


def atomic_write(path: Path, data: bytes, *, mode: int = 0o644, durable: bool = True) -> None:
    """Replace ``path`` with ``data`` so readers see the old or the new file, never half.

    ``mode`` replaces mkstemp's 0600: records, reports and checkpoints are for sharing.
    ``durable=False`` skips the fsyncs, for derived files that are rebuilt when lost.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    _sweep_once(path.parent)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{path.name}.{os.getpid()}.", suffix=_TEMP_SUFFIX, dir=path.parent
    )
    try:
        if os.name != "nt":  # Windows has no fchmod before 3.13, nor these mode bits
            os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    if not durable or os.name == "nt":  # Windows opens no directory (NTFS journals renames)
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def stale_temporaries(
    directory: Path, *, recursive: bool = True, now: float | None = None
) -> list[Path]:
    """Temporaries of interrupted :func:`atomic_write` calls under ``directory``, sorted:
    our name pattern, a regular file (not a symlink), older than :data:`STALE_AFTER_S`,
    and no process with the writer's pid alive on this machine."""
    now = time.time() if now is None else now
    found: list[Path] = []
    pending = [directory]
    while pending:
        current = pending.pop()
        try:
            entries = list(os.scandir(current))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    if recursive:
                        pending.append(Path(entry.path))
                    continue
                match = _TEMPORARY.match(entry.name)
                if match is None:
                    continue
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if (
                stat.S_ISREG(info.st_mode)
                and now - info.st_mtime > STALE_AFTER_S
                and not _alive(int(match.group(1)))
            ):
                found.append(Path(entry.path))
    return sorted(found)


def _alive(pid: int) -> bool:
    """Whether ``pid`` may be a living writer; pid 0 or less is never ours (and
    ``os.kill(0, 0)`` would signal our own process group), so it counts as alive."""
    if pid <= 0 or pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: a process of another user has it
        return True
    return True


def _sweep_once(directory: Path) -> None:
    """Remove the stale temporaries of ``directory`` (not below it), once per process."""
    key = os.path.abspath(directory)
    if key in _SWEPT:
        return
    _SWEPT.add(key)
    for path in stale_temporaries(directory, recursive=False):
        try:
            path.unlink()
        except OSError:
            continue
        from pytest_rtgov.logs import log_event

        log_event("store.stale_temporary_removed", path=str(path))


def symlinks_inside(directory: Path) -> list[Path]:
    """Symbolic links anywhere below ``directory`` (the directory itself may be one),
    sorted. Everything rtgov keeps there is a plain file or folder it made: a link
    would carry its writes (the ledger, the index, a private key) out of the project."""
    found = []
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in [*dirs, *files]:
            path = Path(root) / name
            if path.is_symlink():
                found.append(path)
    return sorted(found)
