"""Names shared by the pytest layer and the CLI, importable at no cost."""

from __future__ import annotations

__all__ = ["DEFAULT_MEMORY_MODE", "MEMORY_MODES"]

MEMORY_MODES = ("tracemalloc", "memray", "rss", "off")
DEFAULT_MEMORY_MODE = "tracemalloc"
