"""One exception tree for pytest-rtgov; the plugin and the CLI map it to exit codes."""

from __future__ import annotations

__all__ = [
    "InvalidMetricError",
    "InvalidOptionError",
    "RecordFormatError",
    "RecordNotFoundError",
    "RtgovError",
]


class RtgovError(Exception):
    """Root of every error pytest-rtgov raises on purpose."""


class InvalidOptionError(RtgovError):
    """A command-line option or marker argument has a value we cannot accept."""


class InvalidMetricError(RtgovError, ValueError):
    """A recorded metric is not a finite number, or its name or unit is unusable."""


class RecordNotFoundError(RtgovError):
    """No run record matches the requested run."""


class RecordFormatError(RtgovError):
    """A stored record does not match its schema.

    ``source`` names the file, ``place`` the JSON path inside it, ``expected`` what
    should have been there.
    """

    def __init__(self, source: str, place: str, expected: str) -> None:
        self.source, self.place, self.expected = source, place, expected
        super().__init__(f"{source}: at {place}: expected {expected}")
