"""The history ``rtgov quarantine propose`` judges: the newest run records the ledger
covers, in ledger order, as :class:`~pytest_rtgov.core.quarantine_propose.RunFacts`.

Only a record a ``verdict`` leaf names, whose file still has the digest that leaf pins,
is read (as ``rtgov audit`` and ``rtgov report`` read them): an edited record is skipped
and said, never believed; a record ``rtgov gc`` pruned is simply gone. The order is the
order of the verdict leaves, the order the runs ended in.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pytest_rtgov.core.quarantine_propose import RunFacts, run_facts
from pytest_rtgov.store.runs import COVERED, RunStore, standing_label

__all__ = ["History", "load_history"]


@dataclass(frozen=True, slots=True)
class History:
    """``runs``: oldest first; ``skipped``: one line per record left out, and why."""

    runs: tuple[RunFacts, ...]
    skipped: tuple[str, ...] = ()


def load_history(state_dir: Path, *, runs: int) -> History:
    """The newest ``runs`` covered run records of ``state_dir``, oldest first.

    A ledger whose frames do not check is a RecordFormatError naming the log (exit 4;
    ``rtgov verify`` says more); a record that does not parse, one naming its file."""
    store = RunStore(state_dir)
    covered = store.covered()
    present = [run_id for run_id in covered if store.path_for(run_id).is_file()]
    facts: list[RunFacts] = []
    skipped: list[str] = []
    for run_id in present[-runs:] if runs > 0 else []:
        record, standing = store.read_checked(run_id, covered)
        if standing != COVERED:
            skipped.append(f"{store.path_for(run_id)}: {standing_label(standing)}")
            continue
        facts.append(run_facts(record, covered[run_id]))
    return History(tuple(facts), tuple(skipped))
