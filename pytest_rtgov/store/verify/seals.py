"""``rtgov verify``, baselines and seals: the baseline's seal (and this machine's local
baseline), its place in the ledger's seal history, and who signed a seal."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pytest_rtgov.store.baselines import seal_rollback
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, BASELINE_PREDICATE, SealError, check_seal
from pytest_rtgov.store.verify.failures import EXIT_SEAL, VerifyFailure, VerifyReport

__all__ = ["verify_baselines", "warn_untrusted"]


def warn_untrusted(
    trusted: bool, signed_by: Iterable[str], where: Path, trust: Trust, report: VerifyReport
) -> None:
    if trusted:
        return
    who = ", ".join(signed_by)
    if trust.required:
        raise VerifyFailure(
            EXIT_SEAL, str(where), f"signed by {who}, not by a key of {trust.keyring_path}"
        )
    report.warnings.append(f"{where}: signed by the untrusted local key {who}")


def _verify_baseline(directory: Path, trust: Trust, report: VerifyReport) -> dict[str, Any]:
    """Check a baseline's seal; returns the signed predicate (who, when, why)."""
    files = [
        p.name
        for p in sorted(directory.iterdir())
        if p.is_file() and p.name != BASELINE_ENVELOPE and not p.name.startswith(".")
    ]
    try:
        check = check_seal(
            directory,
            directory / BASELINE_ENVELOPE,
            trust,
            predicate_type=BASELINE_PREDICATE,
            expect_all=files,
        )
    except SealError as exc:
        raise VerifyFailure(EXIT_SEAL, str(exc.path), exc.reason) from exc
    warn_untrusted(check.trusted, check.signed_by, directory / BASELINE_ENVELOPE, trust, report)
    report.seals_checked += 1
    return check.predicate


def verify_baselines(
    state_dir: Path, baseline_dir: Path | None, trust: Trust, report: VerifyReport
) -> None:
    """The baseline (gone only where the ledger never recorded it), then the local one."""
    if baseline_dir is not None and not (baseline_dir.is_dir() and any(baseline_dir.iterdir())):
        from pytest_rtgov.store.baselines import ledger_record_of

        known = ledger_record_of(baseline_dir, state_dir)
        if known is not None:
            raise VerifyFailure(
                EXIT_SEAL,
                str(baseline_dir),
                f"missing, but the ledger recorded it (leaf {known['index']}, "
                f"{known.get('at', '?')}, by {known.get('who', '?')}): a baseline may not vanish",
            )
    if baseline_dir is not None and baseline_dir.is_dir() and any(baseline_dir.iterdir()):
        predicate = _verify_baseline(baseline_dir, trust, report)
        rollback = seal_rollback(baseline_dir, state_dir, predicate)
        if rollback is not None:
            raise VerifyFailure(EXIT_SEAL, str(baseline_dir / BASELINE_ENVELOPE), rollback)
    # This machine's own measurements (docs/gates.md); signed by its local key, so not
    # checked where only keyring keys count (CI never reads them either).
    local_baseline = state_dir / "baseline-local"
    if not trust.required and local_baseline.is_dir() and any(local_baseline.iterdir()):
        rollback = seal_rollback(
            local_baseline, state_dir, _verify_baseline(local_baseline, trust, report)
        )
        if rollback is not None:
            raise VerifyFailure(EXIT_SEAL, str(local_baseline / BASELINE_ENVELOPE), rollback)
