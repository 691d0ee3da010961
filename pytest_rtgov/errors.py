"""One exception tree for pytest-rtgov, in two families the faces map to exit codes.

- :class:`ReadError`: something could not be read: missing (:class:`NotFoundError`),
  unreadable, not UTF-8, not parseable, or not matching its schema. Messages name the
  file, the place inside it and what was expected.
- :class:`IntegrityError`: something was read and checked, and the check failed: a
  signature, a digest, a seal, the ledger's frames or root.

Besides them: :class:`InvalidOptionError` (a value the user gave is unusable) and
:class:`RefusedError` (a command understood and declined). The CLI maps errors to exit
codes in one function (``cli/main.py``); both faces share the pure
:func:`pytest_rtgov.core.exit_codes.exit_code_for`.
"""

from __future__ import annotations

__all__ = [
    "IntegrityError",
    "InvalidMetricError",
    "InvalidOptionError",
    "NotFoundError",
    "ReadError",
    "RecordFormatError",
    "RecordNotFoundError",
    "RefusedError",
    "RtgovError",
]


class RtgovError(Exception):
    """Root of every error pytest-rtgov raises on purpose."""


class ReadError(RtgovError):
    """Could not read: missing, unreadable, not UTF-8, not parseable, or not its schema."""


class NotFoundError(ReadError):
    """What was asked for does not exist (a run, a baseline, a ledger, an artifact)."""


class IntegrityError(RtgovError):
    """Read and checked, and the check failed: a signature, digest, seal or the ledger."""


class InvalidOptionError(RtgovError):
    """A command-line option or marker argument has a value we cannot accept."""


class RefusedError(RtgovError):
    """A well-formed request that rtgov declines (a baseline from a failed run)."""


class InvalidMetricError(RtgovError, ValueError):
    """A recorded metric is not a finite number, or its name or unit is unusable."""


class RecordNotFoundError(NotFoundError):
    """No run record matches the requested run."""


class RecordFormatError(ReadError):
    """A stored record does not match its schema.

    ``source`` names the file, ``place`` the JSON path inside it, ``expected`` what
    should have been there.
    """

    def __init__(self, source: str, place: str, expected: str) -> None:
        self.source, self.place, self.expected = source, place, expected
        super().__init__(f"{source}: at {place}: expected {expected}")
