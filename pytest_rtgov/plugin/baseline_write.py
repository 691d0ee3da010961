"""The baseline step after the verdict: write and seal what the decision named.

:meth:`pytest_rtgov.plugin.gating.Gatekeeper.decide` decides, and plans the write
(``updated``, ``created``, ``created-local``); this module does it, then adds to the
verdict's notes what was written. Nothing here changes a verdict's status.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.fingerprint import fingerprint
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import Verdict
from pytest_rtgov.logs import log_event
from pytest_rtgov.store.baselines import BaselineStore, who_am_i

if TYPE_CHECKING:
    from pytest_rtgov.plugin.gating import Gatekeeper

__all__ = ["write_baseline"]


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
        notes = [_accept_code(keeper)] if keeper.gates.ab_gates else []
        notes.append(
            f"baseline updated in {store.directory} ({len(entry.changes)} changes, "
            f"by {entry.who}: {entry.reason})"
        )
        if verdict.breaches:
            notes.append(f"{len(verdict.breaches)} breach(es) accepted into the new baseline")
        stale = store.stale(record)
        if stale:
            notes.append(
                f"stale baseline subjects kept (not in this run; "
                f"`rtgov baseline refresh --drop-stale` drops them): {', '.join(stale)}"
            )
        return verdict.with_notes(*notes)
    if kind == "create":
        entry = store.update(
            record,
            who=who,
            reason="first gated run on this fingerprint"
            + (" (--rtgov-bootstrap-baseline)" if keeper.bootstrap else ""),
            only_new=True,
        )
        _seal(keeper, entry, store)
        return verdict.with_notes(
            f"no baseline for fingerprint {fp} yet: recorded "
            f"this run as the baseline in {store.directory}"
        )
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


def _accept_code(keeper: Gatekeeper) -> str:
    """A refresh accepts the timing of today's code: A/B gates with ``ab_ref =
    "accepted"`` compare against it from now on."""
    from pytest_rtgov.store.ab_code import ACCEPTED_REF, AbCodeError, accept_working_tree

    try:
        sha = accept_working_tree(keeper.rootdir)
    except AbCodeError as exc:
        return f"A/B baseline code not recorded: {exc}"
    log_event("ab.accepted", sha=sha)
    return f"A/B baseline code is now {ACCEPTED_REF} = {sha[:12]} (this run's code)"


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
