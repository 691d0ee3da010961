"""The ``@pytest.mark.rtgov(rounds=..., warmup=..., memory=...)`` marker's arguments,
validated."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pytest_rtgov.errors import InvalidOptionError

__all__ = ["MAX_ROUNDS", "RoundsSpec", "parse_rounds_marker"]

MAX_ROUNDS = 10_000


@dataclass(frozen=True, slots=True)
class RoundsSpec:
    """How often a test body runs: ``warmup`` unrecorded-for-gating rounds, then ``rounds``."""

    rounds: int = 1
    warmup: int = 0
    memory: bool = False  # measure peak memory precisely in the auto memory mode


def _count(name: str, value: Any, minimum: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or not (minimum <= value <= MAX_ROUNDS)
    ):
        raise InvalidOptionError(
            f"invalid value for rtgov marker argument {name!r}: expected an integer from "
            f"{minimum} to {MAX_ROUNDS} (not {value!r})"
        )
    return value


def parse_rounds_marker(args: Sequence[Any], kwargs: Mapping[str, Any]) -> RoundsSpec:
    """Validate ``rtgov`` marker arguments.

    >>> parse_rounds_marker((), {"rounds": 7, "warmup": 1})
    RoundsSpec(rounds=7, warmup=1, memory=False)
    """
    if args:
        raise InvalidOptionError(
            "rtgov marker takes keyword arguments only (rounds=, warmup=, memory=), "
            f"got {tuple(args)!r}"
        )
    unknown = sorted(set(kwargs) - {"rounds", "warmup", "memory"})
    if unknown:
        raise InvalidOptionError(
            f"unknown rtgov marker argument(s) {', '.join(unknown)}: expected 'rounds', "
            "'warmup', 'memory'"
        )
    memory = kwargs.get("memory", False)
    if not isinstance(memory, bool):
        raise InvalidOptionError(
            f"invalid value for rtgov marker argument 'memory': expected True or False "
            f"(not {memory!r})"
        )
    return RoundsSpec(
        rounds=_count("rounds", kwargs.get("rounds", 1), 1),
        warmup=_count("warmup", kwargs.get("warmup", 0), 0),
        memory=memory,
    )
