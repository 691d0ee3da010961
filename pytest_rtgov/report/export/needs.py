"""What each export format needs beyond the core install: the ``exporters`` extra.

Prometheus text is written by ``prometheus_client``, OTLP/JSON by ``opentelemetry-proto``
(and the ``protobuf`` it brings); JSON, JUnit XML and Markdown need nothing more.
"""

from __future__ import annotations

from typing import Final

from pytest_rtgov.extras import require

__all__ = ["NEEDS", "require_format"]

# format: the modules its writer imports (all from the ``exporters`` extra)
NEEDS: Final[dict[str, tuple[str, ...]]] = {
    "prometheus": ("prometheus_client",),
    "otlp": ("opentelemetry.proto", "google.protobuf"),
}


def require_format(fmt: str) -> None:
    """Raise :class:`~pytest_rtgov.extras.MissingExtraError` where ``fmt``'s writer cannot
    be imported: ``pip install 'pytest-rtgov[exporters]'``.

    >>> require_format("json")
    """
    for module in NEEDS.get(fmt, ()):
        require(module, extra="exporters", feature=f"the {fmt} export")
