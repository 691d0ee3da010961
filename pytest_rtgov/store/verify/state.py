"""``rtgov verify`` of a whole state directory, in order: the ledger (:mod:`.log`), run
records no leaf names, the baselines (:mod:`.seals`), the artifacts (:mod:`.records`),
and the temporaries interrupted writes left (warnings). The first failure stops it."""

from __future__ import annotations

from pathlib import Path

from pytest_rtgov.store.coverage import ORPHANED_DIR
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger
from pytest_rtgov.store.verify.failures import (
    EXIT_HISTORY,
    EXIT_LEAF,
    EXIT_NO_STATE,
    EXIT_NOT_A_DIR,
    EXIT_ROOT,
    VerifyFailure,
    VerifyReport,
)
from pytest_rtgov.store.verify.log import verify_ledger
from pytest_rtgov.store.verify.records import Coverage, verify_artifacts
from pytest_rtgov.store.verify.seals import verify_baselines
from pytest_rtgov.store.verify.stages import stage_store_in_use, verify_stage_store

__all__ = ["verify_all"]


def verify_all(
    state_dir: Path,
    trust: Trust,
    *,
    since: Path | None = None,
    baseline_dir: Path | None = None,
    stage_store: str | None = None,
    quarantine_file: Path | None = None,
) -> VerifyReport:
    if not state_dir.exists():
        raise VerifyFailure(
            EXIT_NO_STATE,
            str(state_dir),
            "no state directory here (give the one the sessions wrote with --dir)",
        )
    if not state_dir.is_dir():
        raise VerifyFailure(
            EXIT_NOT_A_DIR, str(state_dir), "not a directory: --dir names the state directory"
        )
    report = VerifyReport()
    ledger = Ledger(state_dir / "ledger")
    runs_dir = state_dir / "runs"
    coverage = Coverage(
        runs_dir,
        state_dir / "artifacts",
        {p.stem for p in runs_dir.glob("*.json")} if runs_dir.is_dir() else set(),
    )
    if ledger.exists():
        from pytest_rtgov.store.ledger_sync import pulled_mark

        coverage.pulled_below, pulled_from = pulled_mark(ledger)
        verify_ledger(ledger, trust, since, coverage, report)
        if coverage.elsewhere:
            report.notes.append(
                f"{len(coverage.elsewhere)} run record(s) of leaves pulled from {pulled_from} "
                "are not here: they stay, and are verified, where their sessions ran"
            )
    elif _any_checkpoint(ledger):
        newest = sorted(ledger.checkpoint_dir.glob("*.txt"))[-1]
        raise VerifyFailure(
            EXIT_ROOT,
            str(ledger.log_path),
            f"missing, but the checkpoint {newest} remains: the log was removed or cut",
        )
    elif since is not None:
        raise VerifyFailure(EXIT_HISTORY, str(ledger.log_path), "no ledger, but --since was given")
    else:
        report.warnings.append(f"{ledger.log_path}: no ledger yet")
    for stem in sorted(coverage.unclaimed):
        raise VerifyFailure(
            EXIT_LEAF,
            str(runs_dir / f"{stem}.json"),
            "orphaned run record: no verdict leaf covers it; forged, or written by a session "
            "that crashed before its ledger append (`rtgov ledger recover` moves it to "
            f"{state_dir / ORPHANED_DIR}, or delete it)",
        )
    verify_baselines(state_dir, baseline_dir, trust, report)
    verify_artifacts(
        coverage.artifacts_dir, coverage.artifacts, trust, report, pruned=coverage.pruned
    )
    if stage_store_in_use(state_dir, stage_store):  # the stage cache (stages.py)
        verify_stage_store(state_dir, stage_store, trust, report)
    if quarantine_file is not None:  # rtgov.quarantine.json (quarantine.py)
        from pytest_rtgov.store.quarantine_file import quarantine_today
        from pytest_rtgov.store.verify.quarantine import verify_quarantine

        today = quarantine_today(required=bool(trust.required))  # as a session's
        verify_quarantine(quarantine_file, trust, report, today=today, state_dir=state_dir)
    # Temporaries of interrupted atomic writes: reported (the next writer in that folder
    # removes them), never part of what is verified.
    from pytest_rtgov.store.files import stale_temporaries

    leftovers = stale_temporaries(state_dir, recursive=True)
    if baseline_dir is not None and baseline_dir.is_dir():
        leftovers += stale_temporaries(baseline_dir, recursive=False)
    report.warnings += [
        f"{path}: left by an interrupted write (its writer is gone); the next write in "
        "that folder removes it"
        for path in leftovers
        if not path.is_relative_to(coverage.artifacts_dir)  # reported with the artifacts
    ]
    return report


def _any_checkpoint(ledger: Ledger) -> bool:
    return ledger.checkpoint_dir.is_dir() and any(ledger.checkpoint_dir.glob("*.txt"))
