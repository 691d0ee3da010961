"""What a session's stages found that decides its exit status: outputs that differ under
one key (a nondeterminism finding), and entries refused where signatures are required."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pytest_rtgov.core.constants import ExitCode

__all__ = ["output_differences", "session_problems"]


def output_differences(cached: Mapping[str, str], fresh: Mapping[str, str]) -> list[str]:
    """``"NAME: sha256:<cached> vs sha256:<fresh>"`` for each output that differs.

    >>> output_differences({"w": "a" * 64}, {"w": "b" * 64})[0][:22]
    'w: sha256:aaaaaaaaaaaa'
    """
    return [
        f"{name}: sha256:{cached.get(name, '-')[:12]} vs sha256:{fresh.get(name, '-')[:12]}"
        for name in sorted(set(cached) | set(fresh))
        if cached.get(name) != fresh.get(name)
    ]


def session_problems(fixtures: Any, *, exit_status: int) -> tuple[int, list[str]]:
    """The exit status a session's stages call for, and the lines that say why.

    ``fixtures``: the run record's fixture entries. An entry refused where signatures are
    required (``fatal``) makes it 7: the evidence cannot be trusted. A nondeterminism
    finding makes a passing session 6, as a breached gate does.
    """
    lines: list[str] = []
    status = exit_status
    for entry in fixtures:
        for setup in entry.setups:
            event = setup.stage
            if not event:
                continue
            if event.get("fatal"):
                lines.append(
                    f"stage {event.get('stage')}: cache entry refused where signatures are "
                    f"required: {event.get('reason')}"
                )
                status = int(ExitCode.INTEGRITY)
            if event.get("finding"):
                lines.append(f"stage {event.get('stage')}: {event['finding']}")
                if status == ExitCode.OK:
                    status = int(ExitCode.GATE_BREACHED)
    return status, lines
