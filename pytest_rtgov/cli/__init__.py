"""The ``rtgov`` command: one module per command family, ``main`` in :mod:`.main`.

The CLI reads through ``store/`` and ``core/`` and renders through ``report/``; it never
imports ``plugin/``. Exit codes: :class:`pytest_rtgov.core.constants.ExitCode`.
"""

from pytest_rtgov.cli.main import main

__all__ = ["main"]
