"""The ``rtgov`` command: one module per command family, ``main`` in :mod:`.main`.

The CLI reads through ``store/`` and ``core/`` and renders through ``report/``; it never
imports ``plugin/``.
"""

from pytest_rtgov.cli.main import (
    EXIT_BAD_RECORD,
    EXIT_INTEGRITY,
    EXIT_NOT_FOUND,
    EXIT_OK,
    EXIT_REFUSED,
    EXIT_USAGE,
    main,
)

__all__ = [
    "EXIT_BAD_RECORD",
    "EXIT_INTEGRITY",
    "EXIT_NOT_FOUND",
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "main",
]
