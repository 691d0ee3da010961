"""The baseline step after the verdict: write and seal what the decision named.

:meth:`pytest_rtgov.plugin.gating.Gatekeeper.decide` decides, and plans the write
(``updated``, ``created``, ``created-local``); this module does it, then adds to the
verdict's notes what was written. An update (``--rtgov-update-baseline``) also moves
the A/B reference (``refs/rtgov/accepted``, :func:`pytest_rtgov.store.ab_ref.accept_code`)
and accepts exactly what the next session judges the same way
(:mod:`pytest_rtgov.core.acceptance`): a breach it cannot accept, an absolute budget
above all, keeps the session ``breached`` (exit 6); no other verdict changes status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.acceptance import acceptance_notes, judge_breaches, settle
from pytest_rtgov.core.fingerprint import fingerprint
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.baselines import BaselineStore, who_am_i

if TYPE_CHECKING:
    from pytest_rtgov.plugin.gating import Gatekeeper

__all__ = ["snapshot_measured_code", "write_baseline"]


def write_baseline(
    keeper: Gatekeeper, plan: tuple[str, BaselineStore], verdict: Verdict, record: RunRecord
) -> Verdict:
    """The step after the decision: write (and seal) the baseline the verdict's
    ``baseline_action`` names; the verdict with notes on what was written."""
    kind, store = plan
    fp = fingerprint(record.environment)
    who = who_am_i(keeper.rootdir)
    if kind == "update":
        entry = store.update(
            record, who=who, reason=keeper.reason or "pytest --rtgov-update-baseline"
        )
        _seal(keeper, entry, store)
        notes, ab_follows, ab_why_not = [], False, ""
        if keeper.gates.ab_gates:
            note, ab_follows, ab_why_not = _accept_code(keeper)
            notes.append(note)
        notes.append(
            f"baseline updated in {store.directory} ({len(entry.changes)} changes, "
            f"by {entry.who}: {entry.reason})"
        )
        judged = judge_breaches(verdict.breaches, keeper.gates, ab_follows=ab_follows)
        notes += acceptance_notes(judged, ab_why_not=ab_why_not)
        log_event(
            "baseline.accepted",
            accepted=sum(j.accepted for j in judged),
            not_accepted=sorted({j.kind for j in judged if not j.accepted}),
        )
        stale = store.stale(record)
        if stale:
            notes.append(
                f"stale baseline subjects kept (not in this run; "
                f"`rtgov baseline refresh --drop-stale` drops them): {', '.join(stale)}"
            )
        return settle(verdict.with_notes(*notes), judged)
    if kind == "create":
        entry = store.update(
            record,
            who=who,
            reason="first gated run on this fingerprint"
            + (" (--rtgov-bootstrap-baseline)" if keeper.bootstrap else ""),
            only_new=True,
        )
        _seal(keeper, entry, store)
        note = f"no baseline for fingerprint {fp} yet: recorded this run as the baseline in "
        state = keeper.state_dir
        if state is not None and store.directory.resolve().is_relative_to(state.resolve()):
            note += (  # the default baseline: git-ignored with the state directory
                f"{store.directory}, inside the state directory, which git ignores: no other "
                'clone gates against it; set baseline = "DIR" in gates.toml (`rtgov init` '
                "writes rtgov-baseline) to keep it in a folder to commit"
            )
            return verdict.with_notes(note)
        return verdict.with_notes(note + str(store.directory))
    entry = store.update(
        record,
        who=who,
        reason="first gated run on this fingerprint (this machine only)",
        measurements_only=True,
    )
    _seal(keeper, entry, store)
    return verdict.with_notes(
        f"no measurement baseline for fingerprint {fp} in {keeper.store.directory}: "
        f"recorded this run's measurements in {store.directory} (this machine "
        "only, not committed; --rtgov-update-baseline adds them to the "
        "committed baseline)"
    )


def snapshot_measured_code(keeper: Gatekeeper) -> str | None:
    """Before the tests of an update session: a commit of the code they will measure,
    so that an edit made while they run is not what the update accepts; None when git
    cannot make it (the update then records the code as it is at the end)."""
    from pytest_rtgov.store.ab_code import AbCodeError
    from pytest_rtgov.store.ab_ref import snapshot_code

    try:
        return snapshot_code(keeper.rootdir)
    except AbCodeError as exc:
        log_event("ab.snapshot_failed", level=30, error=str(exc))
        return None


def _accept_code(keeper: Gatekeeper) -> tuple[str, bool, str]:
    """A refresh accepts the timing of today's code: A/B gates with ``ab_ref =
    "accepted"`` compare against it from now on. The note, whether the next session's
    A/B reference is that code, and if not why (for the "not accepted" sentence)."""
    from pytest_rtgov.store.ab_code import AbCodeError
    from pytest_rtgov.store.ab_ref import ACCEPTED, ACCEPTED_REF, accept_code

    try:
        sha = accept_code(keeper.rootdir, keeper.code_snapshot)
    except AbCodeError as exc:
        note = f"A/B baseline code not recorded: {exc}"
        return note, False, "the accepted code could not be recorded in git (above)"
    log_event("ab.accepted", sha=sha)
    note = f"A/B baseline code is now {ACCEPTED_REF} = {sha[:12]} (this run's code)"
    choice = keeper.ab_choice
    if choice is not None and choice.follows_acceptance:
        return note, True, ""
    asked = choice.asked if choice is not None else keeper.ab_ref
    why = (
        f"the A/B reference is ab_ref = {asked!r} (or --rtgov-ab-ref), not the accepted "
        f"code: it stays breached until that ref holds this code (commit it), or set "
        f'ab_ref = "{ACCEPTED}" in gates.toml'
    )
    return note, False, why


def _seal(keeper: Gatekeeper, entry: Any, store: BaselineStore) -> None:
    """Sign the baseline folder as it now is, and log the change for the ledger."""
    if keeper.signing is None:
        return
    from pytest_rtgov.store.baselines import refresh_leaf, seal_baseline

    digest = seal_baseline(store, keeper.signing.signer, entry)
    local = store is not keeper.store
    keeper.ledger_leaves.append(
        refresh_leaf(
            entry,
            digest,
            directory=store.directory,
            state_dir=keeper.state_dir or keeper.rootdir / ".rtgov",
            scope="local" if local else "committed",
        )
    )
