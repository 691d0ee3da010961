"""The delta index: every observation of every run, in columns, for fast queries.

A package; this module is a facade that only re-exports the public names of its
parts, one role each, so ``pytest_rtgov.core.delta_index`` stays the one import path:

- :mod:`.observations`: what one run contributes: its observations (subject x metric:
  median and quartiles, or a recorded value, and what the gates said) and its run facts;
- :mod:`.columns`: :class:`DeltaIndex`, the observations of every run as numpy columns
  in ledger order, and its queries (series, top regressions, the first regression).

The store layer keeps it on disk (``store/delta_index/``); it is never a source of
truth, and the experiment graph (:mod:`pytest_rtgov.core.graph`) is built from it.
"""

from __future__ import annotations

from pytest_rtgov.core.delta_index.columns import BREACH_CODES, COLUMNS, VERDICTS, DeltaIndex
from pytest_rtgov.core.delta_index.observations import (
    MEASURED,
    NAN,
    BaselineEvent,
    Observation,
    RunInfo,
    observations_of,
    quartiles,
    run_info,
)

__all__ = [
    "BREACH_CODES",
    "COLUMNS",
    "MEASURED",
    "NAN",
    "VERDICTS",
    "BaselineEvent",
    "DeltaIndex",
    "Observation",
    "RunInfo",
    "observations_of",
    "quartiles",
    "run_info",
]
