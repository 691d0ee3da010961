"""Structured logging for pytest-rtgov's workflows, with a JSON-lines option.

Every workflow logs through ``logging.getLogger("pytest_rtgov")`` with an ``event``
name and fields in ``extra={"fields": {...}}``. :class:`JsonLinesFormatter` writes
one JSON object per record; the plain formatter appends the fields as key=value.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

__all__ = ["LOGGER_NAME", "JsonLinesFormatter", "add_json_lines_handler", "get_logger", "log_event"]

LOGGER_NAME = "pytest_rtgov"


def get_logger() -> logging.Logger:
    return logging.getLogger(LOGGER_NAME)


def log_event(event: str, *, level: int = logging.INFO, **fields: Any) -> None:
    logger = get_logger()
    if logger.isEnabledFor(level):
        logger.log(level, event, extra={"fields": fields})


class JsonLinesFormatter(logging.Formatter):
    """``{"ts": ..., "level": ..., "logger": ..., "event": ..., <fields>}`` per line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
        }
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            payload.update(fields)
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, sort_keys=True, default=str)


class _JsonLinesFileHandler(logging.FileHandler):
    """A FileHandler whose write failures (a full disk) are one line on stderr, once,
    instead of logging's traceback per event: the log is a copy, never the evidence."""

    _warned = False

    def handleError(self, record: logging.LogRecord) -> None:
        self._warn(sys.exc_info()[1])

    def close(self) -> None:
        try:
            super().close()  # flushes what is buffered
        except OSError as exc:
            self._warn(exc)

    def _warn(self, exc: BaseException | None) -> None:
        if self._warned:
            return
        self._warned = True
        reason = getattr(exc, "strerror", None) or str(exc)
        sys.stderr.write(
            f"pytest-rtgov: could not write log events to {self.baseFilename}: {reason}; "
            "later ones are dropped\n"
        )


def add_json_lines_handler(path: Path, level: int = logging.INFO) -> logging.Handler:
    """Append JSON lines for pytest-rtgov's logger to ``path``; returns the handler."""
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = _JsonLinesFileHandler(path, encoding="utf-8", errors="backslashreplace")
    handler.setFormatter(JsonLinesFormatter())
    handler.setLevel(level)
    logger = get_logger()
    logger.addHandler(handler)
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    return handler
