"""Baseline seals: sign every file of a baseline directory (DSSE), check the seal, and
say what a session does with a seal that fails, is untrusted or is a rollback."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rtgov.store.baselines.directory import BaselineStore, RefreshEntry
from pytest_rtgov.store.baselines.history import seal_history

__all__ = [
    "SealStatus",
    "baseline_seal_notes",
    "baseline_seal_status",
    "check_baseline_seal",
    "seal_baseline",
]


def _baseline_files(store: BaselineStore) -> list[str]:
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE

    return [
        p.name
        for p in sorted(store.directory.iterdir())
        if p.is_file() and p.name != BASELINE_ENVELOPE and not p.name.startswith(".")
    ]


def seal_baseline(store: BaselineStore, signer: Any, entry: RefreshEntry) -> str:
    """Sign every baseline file; returns ``sha256:<hex>`` of the envelope written."""
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, BASELINE_PREDICATE, seal, sha256_file

    envelope = store.directory / BASELINE_ENVELOPE
    seal(
        store.directory,
        _baseline_files(store),
        envelope,
        [signer],
        predicate_type=BASELINE_PREDICATE,
        predicate={
            "run_id": entry.run_id,
            "at": entry.at,
            "who": entry.who,
            "reason": entry.reason,
        },
    )
    return "sha256:" + sha256_file(envelope)


def check_baseline_seal(store: BaselineStore, trust: Any) -> Any:
    """The baseline's seal, verified: raises SealError naming the first bad file."""
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, BASELINE_PREDICATE, check_seal

    return check_seal(
        store.directory,
        store.directory / BASELINE_ENVELOPE,
        trust,
        predicate_type=BASELINE_PREDICATE,
        expect_all=_baseline_files(store),
    )


@dataclass(frozen=True)
class SealStatus:
    """The baseline's seal: notes to show, whether gating must stop, and, when the seal
    fails (an edited, added or removed file, a bad envelope), what failed."""

    notes: list[str]
    stop: bool
    failure: str | None = None
    # A valid seal the ledger has not recorded (made elsewhere): its signed predicate.
    unrecorded: dict[str, Any] | None = None


def baseline_seal_status(
    store: BaselineStore, trust: Any, *, what: str = "baseline", state_dir: Path | None = None
) -> SealStatus:
    """Check the baseline's seal.

    Locally a bad or untrusted signature is a loud warning and the baseline is used
    (never re-sealed by a session: see ``plugin/gating.py``); where signatures are
    required (CI) it stops gating (exit 7).
    """
    from pytest_rtgov.store.sealed import BASELINE_ENVELOPE, SealError

    # A directory left with only its envelope is checked too: its listed files are gone.
    if trust is None or not (store.exists() or (store.directory / BASELINE_ENVELOPE).is_file()):
        return SealStatus([], False)

    try:
        check = check_baseline_seal(store, trust)
    except SealError as exc:
        message = f"{what} signature: {exc}"
        if trust.required:
            return SealStatus([f"{message}; refusing to gate against it"], True, str(exc))
        return SealStatus(
            [
                f"WARNING: {message}; gating against it anyway (a failure in CI; a session "
                "never re-seals it)"
            ],
            False,
            str(exc),
        )
    rollback, recorded = (
        seal_history(store.directory, state_dir, check.predicate) if state_dir else (None, True)
    )
    if rollback is not None:
        # An integrity failure anywhere, as a vanished baseline is: never gated against.
        return SealStatus(
            [f"{what} signature: {rollback}; refusing to gate against it"], True, rollback
        )
    unrecorded = None if recorded else dict(check.predicate)
    if not check.trusted:
        who = ", ".join(check.signed_by)
        source = getattr(trust, "source", "") or f"keyring {trust.keyring_path}"
        if trust.required:
            return SealStatus(
                [
                    f"{what} signature: signed by {who}, which the {source} does not list; "
                    "refusing to gate against it"
                ],
                True,
            )
        return SealStatus(
            [f"WARNING: {what} signed by {who}, not by a key of the {source}; a failure in CI"],
            False,
            unrecorded=unrecorded,
        )
    return SealStatus([], False, unrecorded=unrecorded)


def baseline_seal_notes(store: BaselineStore, trust: Any) -> tuple[list[str], bool]:
    """Notes on the baseline's signature, and whether gating must stop (shared by the
    session's gatekeeper and ``rtgov merge --gate``)."""
    status = baseline_seal_status(store, trust)
    return status.notes, status.stop
