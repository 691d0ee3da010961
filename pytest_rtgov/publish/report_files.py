"""Gather what the HTML report shows from the disk (ledger, index), and write it."""

from __future__ import annotations

import base64
import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_rtgov.core.format import format_digest
from pytest_rtgov.core.notes import open_note
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.verdict import UNGATED
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.files import atomic_write
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.ledger import Ledger, read_checkpoint_body

if TYPE_CHECKING:
    from pytest_rtgov.store.delta_index import Appended

__all__ = ["ledger_facts", "lineage_facts", "write_report"]


def ledger_facts(
    state_dir: Path, run_id: str, trust: Trust, *, leaf_index: int | None = None
) -> dict[str, Any]:
    """Where the run's verdict leaf is, which checkpoint covers it, and who signed it.

    ``leaf_index`` (from the delta index) saves a scan of the ledger."""
    ledger = Ledger(state_dir / "ledger")
    if not ledger.exists():
        return {}
    index = leaf_index
    if index is None:
        needle = f'"run_id":"{run_id}"'.encode()
        try:
            for frame in ledger.frames():
                if needle in frame.payload and b'"kind":"verdict"' in frame.payload:
                    index = frame.index
                    break
        except RtgovError as exc:
            return {"status": f"ledger does not verify: {exc}"}
    if index is None:
        return {"status": "this run is not in the ledger"}
    facts: dict[str, Any] = {"verdict leaf": index}
    for path in ledger.checkpoint_paths():
        try:
            body = read_checkpoint_body(path)
        except RtgovError:
            continue  # verify names it; the report shows the first readable cover
        if body.size <= index:
            continue
        facts["checkpoint"] = str(path)
        facts["tree size"] = body.size
        facts["root (base64)"] = base64.b64encode(body.root_hash).decode()
        try:
            opened = open_note(path.read_text(encoding="utf-8"), trust.verifiers())
            names = [v.name for v in opened.verified_by]
            trusted = any(trust.is_trusted(v) for v in opened.verified_by)
            facts["signature"] = f"valid, by {', '.join(names)}" + (
                "" if trusted else " (local key, not in the keyring)"
            )
        except RtgovError as exc:
            facts["signature"] = f"DOES NOT VERIFY: {exc}"
        break
    else:
        facts["checkpoint"] = "none yet (an interrupted session?)"
    facts["check everything"] = "rtgov verify"
    return facts


def lineage_facts(index: Any, run_id: str) -> dict[str, Any]:
    """The run's place in the experiment graph: code, machine, baseline, artifacts."""
    if index is None or run_id not in index.run_pos:
        return {}
    info = index.runs[index.run_pos[run_id]]
    facts: dict[str, Any] = {
        "built from": info.code,
        "ran on": f"environment {info.fingerprint}",
    }
    leaf = index.run_leaf.get(run_id)
    before = [b for b in index.baselines if leaf is None or b.leaf_index < leaf]
    if info.status != UNGATED:
        facts["compared against"] = (
            f"baseline:{before[-1].sequence} ({before[-1].at}, {before[-1].who}: "
            f"{before[-1].reason})"
            if before
            else "baseline:0 (present before the ledger began)"
        )
    produced = [a for a in index.artifacts if a["run_id"] == run_id]
    if produced:
        facts["produced"] = ", ".join(
            f"{a['name']} {format_digest(a['digest'])} ({a['subject']})" for a in produced
        )
    position = index.run_pos[run_id]
    if position > 0:
        facts["previous run"] = index.runs[position - 1].run_id
    return facts


def write_report(
    path: Path,
    record: RunRecord,
    *,
    state_dir: Path,
    trust: Trust,
    appended: Appended | None = None,
) -> Path:
    """Render the report of ``record`` (history from the index, facts from the ledger).

    ``appended``: the session's leaves, when this process has just appended them; the
    index then takes the record from memory (see :meth:`DeltaIndexStore.load`).
    """
    from pytest_rtgov.core.delta_index import observations_of
    from pytest_rtgov.report.html import render_report, report_context
    from pytest_rtgov.store.delta_index import DeltaIndexStore

    observations = observations_of(record)  # once, for the index and the report
    if appended is not None:
        appended = dataclasses.replace(appended, observations=observations)
    try:
        index = DeltaIndexStore(state_dir, trust=trust).load(appended=appended)
    except RtgovError:
        index = None
    context = report_context(
        record,
        observations=observations,
        index=index,
        ledger=ledger_facts(
            state_dir,
            record.run_id,
            trust,
            leaf_index=index.run_leaf.get(record.run_id) if index is not None else None,
        ),
        lineage=lineage_facts(index, record.run_id),
    )
    # backslashreplace: a path that is not UTF-8 (lone surrogates) shows as \udcXX
    atomic_write(path, render_report(context).encode("utf-8", "backslashreplace"))
    return path
