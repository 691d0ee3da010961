"""Names shared by the pytest layer and the CLI, importable at no cost: the memory modes,
the export formats and :class:`ExitCode`, the one table of exit statuses."""

from __future__ import annotations

import enum

__all__ = [
    "AUTO_CHEAP_PROBE",
    "DEFAULT_MEMORY_MODE",
    "EXIT_GATE_BREACHED",
    "EXIT_INTEGRITY",
    "EXPORT_FORMATS",
    "MEMORY_MODES",
    "ExitCode",
]

MEMORY_MODES = ("auto", "tracemalloc", "memray", "rss", "off")
# --rtgov-export formats; here, not in report.export, so that checking the option does
# not import the exporters (and numpy) before any test runs.
EXPORT_FORMATS = ("json", "prometheus", "otlp", "junit", "markdown")
DEFAULT_MEMORY_MODE = "auto"
# The probe the auto mode measures with where nothing asked for precision; no gate
# judges its values (core/subjects.py, docs/memory.md).
AUTO_CHEAP_PROBE = "rss"


class ExitCode(enum.IntEnum):
    """Every exit status of ``pytest --rtgov`` and of ``rtgov``.

    pytest's own statuses are 0-5 (:class:`pytest.ExitCode`); a session adds 6 and 7. The
    ``rtgov`` command uses 2-5 in its own sense (argparse's 2 among them) and 8-16.
    ``docs/usage.md`` renders this table (:func:`pytest_rtgov.core.exit_codes.render_table`).
    """

    OK = 0
    TESTS_FAILED = 1
    USAGE = 2
    NOT_FOUND = 3
    BAD_INPUT = 4
    REFUSED = 5
    GATE_BREACHED = 6
    INTEGRITY = 7
    INCOMPARABLE = 8
    NOT_MERGEABLE = 9
    LEDGER_FRAME = 10
    LEDGER_LEAF = 11
    LEDGER_ROOT = 12
    CHECKPOINT = 13
    HISTORY = 14
    SEAL = 15
    PROOF = 16


# The two statuses a session adds to pytest's; tests import these names.
EXIT_GATE_BREACHED = ExitCode.GATE_BREACHED
EXIT_INTEGRITY = ExitCode.INTEGRITY
