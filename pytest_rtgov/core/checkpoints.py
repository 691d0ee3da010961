"""C2SP tlog checkpoints: the body of the signed note (:mod:`.notes`) a log signs.

A checkpoint (C2SP ``tlog-checkpoint``) is origin, tree size in decimal and the base64 root
hash, one per line, then optional extension lines. Formatting and parsing are pure and
strict: ``parse_checkpoint(format_checkpoint(x)) == x``.

>>> cp = Checkpoint("example.com/log", 3, bytes(32))
>>> format_checkpoint(cp)
'example.com/log\\n3\\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\\n'
>>> parse_checkpoint(format_checkpoint(cp)) == cp
True
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass

from pytest_rtgov.core.keys import NoteFormatError, b64decode_std
from pytest_rtgov.core.notes import check_text

__all__ = ["Checkpoint", "format_checkpoint", "parse_checkpoint"]

_DECIMAL = re.compile(r"0|[1-9][0-9]*")


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """A C2SP tlog checkpoint: the log's origin, tree size and root hash.

    ``extensions`` are the optional lines after the root hash, without their newlines.
    """

    origin: str
    size: int
    root_hash: bytes
    extensions: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not self.origin:
            raise NoteFormatError("expected a non-empty checkpoint origin")
        _check_line(self.origin, "the checkpoint origin")
        if isinstance(self.size, bool) or not isinstance(self.size, int):
            raise NoteFormatError(f"expected an integer tree size, got {self.size!r}")
        if not 0 <= self.size < 2**64:
            raise NoteFormatError(f"expected a tree size in [0, 2**64), got {self.size}")
        if len(self.root_hash) != 32:
            raise NoteFormatError(
                f"expected a 32-byte checkpoint root hash, got {len(self.root_hash)} bytes"
            )
        object.__setattr__(self, "root_hash", bytes(self.root_hash))
        object.__setattr__(self, "extensions", tuple(self.extensions))
        for i, line in enumerate(self.extensions):
            if not line:
                raise NoteFormatError(f"expected checkpoint extension {i} to be non-empty")
            _check_line(line, f"checkpoint extension {i}")


def _check_line(line: str, what: str) -> None:
    if "\n" in line:
        raise NoteFormatError(f"expected {what} on one line, got a newline in {line!r}")
    check_text(line, what)


def format_checkpoint(checkpoint: Checkpoint) -> str:
    """The checkpoint body: origin, size, base64 root hash and extensions, each line ending LF."""
    lines = [
        checkpoint.origin,
        str(checkpoint.size),
        base64.b64encode(checkpoint.root_hash).decode("ascii"),
        *checkpoint.extensions,
    ]
    return "".join(line + "\n" for line in lines)


def parse_checkpoint(text: str) -> Checkpoint:
    """Read a checkpoint body (the text of a verified note), strictly.

    The origin must be non-empty, the size decimal without leading zeros, the root hash 32
    bytes in standard padded base64, and every line (extensions too) non-empty and ending LF.
    """
    if not text.endswith("\n"):
        raise NoteFormatError("expected a checkpoint ending with a newline")
    lines = text[:-1].split("\n")
    if len(lines) < 3:
        raise NoteFormatError(
            f"expected at least 3 checkpoint lines (origin, size, root hash), got {len(lines)}"
        )
    origin, size_text, root_text, *extensions = lines
    if not _DECIMAL.fullmatch(size_text):
        raise NoteFormatError(
            f"expected a decimal tree size without leading zeros on line 2, got {size_text!r}"
        )
    root_hash = b64decode_std(root_text, "the root hash on line 3")
    return Checkpoint(origin, int(size_text), root_hash, tuple(extensions))
