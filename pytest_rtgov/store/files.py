"""Atomic file writes: temporary file, fsync, ``os.replace``, fsync of the directory."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from pytest_rtgov.errors import RecordFormatError

__all__ = ["atomic_write", "read_json", "utf8_text"]


def read_json(path: Path) -> Any:
    """Decode a JSON file; a syntax error names the file, line and column.

    Bytes that are not UTF-8 are a RecordFormatError naming the line and byte too.
    """
    return _decode_json(path, path.read_bytes())


def _decode_json(path: Path, data: bytes) -> Any:
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
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
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
    if not durable:
        return
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
