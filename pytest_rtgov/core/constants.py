"""Names shared by the pytest layer and the CLI, importable at no cost."""

from __future__ import annotations

__all__ = [
    "DEFAULT_MEMORY_MODE",
    "EXIT_GATE_BREACHED",
    "EXIT_INTEGRITY",
    "EXPORT_FORMATS",
    "MEMORY_MODES",
]

MEMORY_MODES = ("tracemalloc", "memray", "rss", "off")
# --rtgov-export formats; here, not in report.export, so that checking the option does
# not import the exporters (and numpy) before any test runs.
EXPORT_FORMATS = ("json", "prometheus", "otlp", "junit", "markdown")
DEFAULT_MEMORY_MODE = "tracemalloc"

# Exit status of a session whose tests passed but whose gates breached. pytest's own
# statuses are 0-5 (tests failed: 1, usage error: 4); 6 is free and distinct.
EXIT_GATE_BREACHED = 6

# Exit status of a session whose evidence cannot be trusted or kept: the ledger does
# not verify or cannot be appended to, (in CI) the baseline's signature fails, the
# session would write a baseline whose seal fails (never re-sealed by a session), or a
# baseline the ledger recorded is gone. The run record is written all the same.
EXIT_INTEGRITY = 7
