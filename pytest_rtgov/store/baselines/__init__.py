"""Baselines on disk, as reviewable canonical JSON, with an audit log of refreshes.

Layout of a baseline directory (``fixtures/baseline/`` in this repository)::

    metrics.json                 recorded metrics (accuracy, loss, digests): any machine
    env-<fingerprint>.json       measurements (time, memory) for one environment fingerprint
    refreshes.jsonl              one line per refresh: who, when, why, run, old and new values
    baseline.dsse.json           the seal: a DSSE envelope over every file above

A package; this module only re-exports the public names of its parts, one role each:

- :mod:`.directory`: the baseline directory, its views, refreshes and audit log;
- :mod:`.seals`: sealing a baseline and checking its seal;
- :mod:`.history`: the seals the ledger recorded, and the rollback check against them.
"""

from __future__ import annotations

from pytest_rtgov.store.baselines.directory import SCHEMA, BaselineStore, RefreshEntry, who_am_i
from pytest_rtgov.store.baselines.history import (
    adoption_leaf,
    baseline_ref,
    ledger_record_of,
    ledger_seals_of,
    refresh_leaf,
    seal_history,
    seal_rollback,
)
from pytest_rtgov.store.baselines.seals import (
    SealStatus,
    baseline_seal_notes,
    baseline_seal_status,
    check_baseline_seal,
    seal_baseline,
)

__all__ = [
    "SCHEMA",
    "BaselineStore",
    "RefreshEntry",
    "SealStatus",
    "adoption_leaf",
    "baseline_ref",
    "baseline_seal_notes",
    "baseline_seal_status",
    "check_baseline_seal",
    "ledger_record_of",
    "ledger_seals_of",
    "refresh_leaf",
    "seal_baseline",
    "seal_history",
    "seal_rollback",
    "who_am_i",
]
