"""Progress bars for long work reported through the fixture API (training epochs).

A rich progress bar on an interactive terminal; nothing at all in CI logs (``CI``
set), when output is not a terminal, under ``-q``, or in an xdist worker (which
has no terminal). pytest captures output while fixtures run, so the bar suspends
capturing for each redraw and draws on pytest's own terminal writer; rich's
auto-refresh thread is off, so nothing is written between those moments.
"""

from __future__ import annotations

import os
import sys
from types import TracebackType
from typing import Any

__all__ = ["NullProgress", "TerminalProgress", "wants_progress"]


class NullProgress:
    """The quiet stand-in: same interface, does nothing."""

    def __enter__(self) -> NullProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def advance(self, steps: float = 1, **fields: Any) -> None:
        return None


def wants_progress(config: Any, *, is_worker: bool, environ: dict[str, str] | None = None) -> bool:
    env = os.environ if environ is None else environ
    if is_worker or env.get("CI", "").strip().lower() in ("1", "true", "yes"):
        return False
    if config.get_verbosity() < 0:
        return False
    # Asked in pytest_configure, when pytest's capturing is suspended and stdout is
    # the real one (the terminal reporter may not be registered yet).
    isatty = getattr(sys.stdout, "isatty", None)
    return bool(isatty and isatty())


class TerminalProgress:
    def __init__(self, config: Any, description: str, total: float | None) -> None:
        from rich.console import Console
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self._capman = config.pluginmanager.getplugin("capturemanager")
        console = Console(file=config.get_terminal_writer()._file, force_terminal=True)
        self._progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            console=console,
            auto_refresh=False,
            transient=True,
        )
        self._task = self._progress.add_task(description, total=total, info="")

    def _draw(self, action: str) -> None:
        if self._capman is None:
            getattr(self._progress, action)()
            return
        with self._capman.global_and_fixture_disabled():
            getattr(self._progress, action)()

    def __enter__(self) -> TerminalProgress:
        self._draw("start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._draw("stop")

    def advance(self, steps: float = 1, **fields: Any) -> None:
        info = "  ".join(f"{k}={v}" for k, v in sorted(fields.items()))
        self._progress.update(self._task, advance=steps, info=info)
        self._draw("refresh")
