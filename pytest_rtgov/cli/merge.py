"""``rtgov merge RUN RUN... [--gate]``: the shards of one run as one record, then gated.

Each shard of ``pytest --rtgov --rtgov-shard I/N`` writes its own run record; merging
them (:func:`pytest_rtgov.core.shard.merge_records`) gives the record an unsharded run
of the same tests would have written, under a fresh run id. With ``--gate`` the gates
are evaluated on it against the baseline as ``pytest --rtgov-gate`` does, except that
the baseline is never written: refreshing stays ``rtgov baseline refresh --from RUN``.

Exit codes (besides the CLI's 0, 2, 3, 4):
    1  ``--gate``: tests failed in a shard (the merged record's exit status, as pytest's)
    6  ``--gate``: a gate breached, or ``--require-baseline`` and there is no baseline
    7  ``--gate``: the baseline's signature fails or is untrusted where signatures are
       required (``CI=true``); or the ledger cannot be appended to
    9  the records cannot be merged (the message names the runs and why)

The merged record is written under the ledger's lock and logged in it
(:func:`pytest_rtgov.store.logged_run.write_and_log`, as a session's record is), so it
says the exit status the command ends with: a ledger that fails makes it exit 7, the
record's too (a gated one's verdict ``error``, with the reason as a note), rewritten
when the ledger failed after the record was written.

A record named by run id, prefix or ``latest``, or by the path of a file in a state
directory's ``runs/`` beside its ``ledger/``, is used only if that ledger covers it (a
verdict leaf names the run and pins the file's sha256); else exit 4 naming the file. A
file from anywhere else (a shard's record downloaded from CI artifacts, whose ledger
stayed on the shard's machine) cannot be checked here: it is merged with a note saying so.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_rtgov.core.gates_config import GatesConfig
from pytest_rtgov.core.quarantine_record import excused_among, quarantine_of
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.core.shard import merge_records
from pytest_rtgov.core.verdict import Verdict, decide

__all__ = [
    "MergeOutcome",
    "add_parsers",
    "gate_record",
    "merge_runs",
    "render_merge",
    "run",
]


def add_parsers(sub: Any) -> None:
    merge = sub.add_parser(
        "merge",
        help="merge the run records of the shards of one run (--rtgov-shard), then gate it",
    )
    merge.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run id, unique prefix, latest, or the path of a run record file",
    )
    merge.add_argument(
        "--gate", action="store_true", help="evaluate the gates on the merged run (no refresh)"
    )
    merge.add_argument(
        "--gates",
        type=Path,
        default=None,  # cli.options.apply_project_config fills it
        help="gates file (default: the project's pytest setting, else gates.toml)",
    )
    merge.add_argument(
        "--require-baseline",
        action="store_true",
        help="with --gate: fail (exit 6) when there is no baseline for the run's fingerprint",
    )
    merge.add_argument(
        "--keyring",
        type=Path,
        default=None,  # cli.options.apply_project_config fills it
        help="trusted public keys for the baseline's seal (default: the project's pytest "
        "setting, else rtgov.keyring)",
    )
    merge.add_argument(
        "--signing-key",
        type=Path,
        default=None,
        help="key that signs the ledger checkpoint of the merged run "
        "(default: $RTGOV_SIGNING_KEY, else the local key)",
    )
    merge.add_argument(
        "--require-signature",
        action="store_true",
        help="the baseline must be signed by a keyring key (implied by CI=true)",
    )


def run(args: argparse.Namespace) -> int:
    """``rtgov merge``: merge, gate if asked, write and log in the ledger, print a summary;
    the exit status (0, or the gate's 1, 6 or 7). Records that are not shards of one run
    raise ShardMergeError (exit 9), missing or bad files their typed errors, a ledger
    that fails NotRecordedError (exit 7) once the record says 7: ``cli.main.exit_code``
    maps them."""
    from pytest_rtgov.cli.signing import NotRecordedError, log_run

    merged = _merged(
        args.dir,
        args.runs,
        gate=args.gate,
        gates_path=args.gates,
        require_baseline=args.require_baseline,
        keyring=args.keyring,
        require_signature=args.require_signature,
    )
    logged = log_run(args, merged.store, merged.record, merged.verdict)
    outcome = MergeOutcome(
        record=logged.record,
        path=logged.path,
        exit_status=_exit_status(logged.verdict),
        shard_run_ids=merged.shard_run_ids,
        verdict=logged.verdict,
    )
    sys.stdout.write(render_merge(outcome, markup=sys.stdout.isatty()))
    if logged.error is not None:
        raise NotRecordedError(
            f"the merged run {logged.record.run_id} is written with exit status "
            f"{logged.record.exit_status} but not logged in the ledger: {logged.error}"
        )
    result = logged.result
    print(f"ledger: {result.size} leaves, checkpoint {result.checkpoint_path}")
    return outcome.exit_status


@dataclass(frozen=True)
class MergeOutcome:
    record: RunRecord
    path: Path
    exit_status: int
    shard_run_ids: tuple[str, ...]
    verdict: Verdict | None = None


def merge_runs(
    state_dir: Path,
    refs: Sequence[str],
    *,
    gate: bool,
    gates_path: Path,
    require_baseline: bool = False,
    keyring: Path | None = None,
    require_signature: bool = False,
) -> tuple[RunRecord, Path, int]:
    """Read the shards' records, merge them under a fresh run id, gate if asked, write.

    Returns the merged record, the path it was written to, and the exit status: with
    ``gate`` the verdict's (0, 1, 6 or 7), else 0. Nothing is appended to the ledger
    (``rtgov merge`` logs it: :func:`run`) and the baseline is never written. Raises
    ShardMergeError, RecordNotFoundError, RecordFormatError or GatesConfigError (all
    RtgovError).
    """
    merged = _merged(
        state_dir,
        refs,
        gate=gate,
        gates_path=gates_path,
        require_baseline=require_baseline,
        keyring=keyring,
        require_signature=require_signature,
    )
    path = merged.store.write(merged.record)
    return merged.record, path, _exit_status(merged.verdict)


def _exit_status(verdict: Verdict | None) -> int:
    """The gate's exit status; an ungated merge exits 0 whatever its tests did (its
    record keeps their status)."""
    return int(verdict.exit_status) if verdict is not None else 0


@dataclass(frozen=True)
class _Merged:
    """The merged record as decided, not yet written."""

    store: Any  # store.runs.RunStore
    record: RunRecord
    verdict: Verdict | None
    shard_run_ids: tuple[str, ...]


def _merged(
    state_dir: Path,
    refs: Sequence[str],
    *,
    gate: bool,
    gates_path: Path,
    require_baseline: bool,
    keyring: Path | None,
    require_signature: bool,
) -> _Merged:
    """Read, merge and (with ``gate``) decide: the record says its verdict before it is
    written."""
    from pytest_rtgov.store.runs import RunStore, new_run_id

    store = RunStore(state_dir)
    records = [_read(store, ref) for ref in refs]
    record = merge_records(records, run_id=new_run_id())
    verdict = None
    if gate:
        from pytest_rtgov.store.gates_file import baseline_directory, load_gates
        from pytest_rtgov.store.keys import load_trust, require_signatures

        gates = load_gates(gates_path)
        baseline_dir = baseline_directory(gates, [Path.cwd()])
        trust = load_trust(
            keyring=keyring,
            state_dir=state_dir,
            required=require_signatures(require_signature),
        )
        verdict = gate_record(
            record, gates, baseline_dir, trust=trust, require_baseline=require_baseline
        )
        record, verdict = _quarantine_judged(record, verdict)
        record = verdict.stamp(dataclasses.replace(record, mode="gate"))
    return _Merged(store, record, verdict, tuple(r.run_id for r in records))


def _read(store: Any, ref: str) -> RunRecord:
    """A run record by id, prefix or ``latest``, or from a file (downloaded CI artifacts);
    only one its ledger covers, where that ledger is at hand (module docstring)."""
    from pytest_rtgov.store.runs import _RUN_ID, RunStore

    candidate = Path(ref)
    if candidate.suffix == ".json" and candidate.is_file():
        runs_dir = candidate.resolve().parent
        beside = RunStore(runs_dir.parent)
        ours = runs_dir == store.runs_dir.resolve()
        if (
            _RUN_ID.match(candidate.stem)
            and runs_dir.name == "runs"
            and (ours or beside.ledger_log.is_file())
        ):
            return beside.read_covered(candidate.stem)
        from pytest_rtgov.store.files import read_json

        print(
            f"rtgov: note: {candidate} has no ledger beside it: merged as given (its "
            "session's ledger vouched for it; the merged run enters this ledger)",
            file=sys.stderr,
        )
        return RunRecord.from_dict(read_json(candidate), source=str(candidate))
    record: RunRecord = store.read_covered(ref)
    return record


def gate_record(
    record: RunRecord,
    gates: GatesConfig,
    baseline_dir: Path,
    *,
    trust: Any,
    require_baseline: bool,
) -> Verdict:
    """Evaluate every gate on ``record`` and decide (:func:`pytest_rtgov.core.verdict.decide`,
    as a session does), without writing the baseline (a missing one is a note, not created)."""
    from pytest_rtgov.core.fingerprint import fingerprint
    from pytest_rtgov.core.gates import evaluate_gates
    from pytest_rtgov.core.provenance import baseline_comparability_notes
    from pytest_rtgov.store.baselines import BaselineStore, baseline_seal_notes

    store = BaselineStore(baseline_dir)
    notes, seal_failed = baseline_seal_notes(store, trust)
    if seal_failed:
        return decide((), tests_exit_status=0, baseline="untrusted", notes=notes)
    view = store.view(record.environment)
    results, empty = evaluate_gates(gates, record, view)
    from pytest_rtgov.core.quarantine_record import excused_keep_gates, excused_tests

    results = excused_keep_gates(results, record, excused_tests(record.quarantine))
    notes += baseline_comparability_notes(record, view.metrics)
    notes += [
        f"gate {name!r} selected no test or fixture in this run ({gates.source})" for name in empty
    ]
    tests_ok = record.exit_status == 0
    state = "present"
    if not store.has_fingerprint(record.environment):
        if require_baseline and tests_ok and not any(r.breached for r in results):
            notes.append(
                f"no baseline for fingerprint {fingerprint(record.environment)} "
                "and --require-baseline is set"
            )
            state = "absent"
        else:
            if view.fingerprint_note:
                notes.append(view.fingerprint_note)
            notes.append(
                "rtgov merge does not create baselines: "
                f"`rtgov baseline refresh --from {record.run_id}` takes this run as one"
            )
    pairs = ((r.gate, r.subject) for r in results)
    excused = excused_among(quarantine_of(record.quarantine), pairs)
    return decide(
        results, tests_exit_status=record.exit_status, baseline=state, notes=notes,
        quarantined=excused,
    )  # fmt: skip


def _quarantine_judged(record: RunRecord, verdict: Verdict) -> tuple[RunRecord, Verdict]:
    """The merged record's quarantine section with its gates, and the verdict its
    expired or untrusted entries call for, as a session's end decides them."""
    from pytest_rtgov.core.constants import EXIT_INTEGRITY
    from pytest_rtgov.core.quarantine_record import session_problems, with_gates

    if not record.quarantine:
        return record, verdict
    section = with_gates(record.quarantine, verdict.gate_results())
    status, lines = session_problems(section, exit_status=verdict.exit_status)
    if status != verdict.exit_status:
        verdict = dataclasses.replace(
            verdict,
            status="error" if status == EXIT_INTEGRITY else "breached",
            exit_status=status,
            notes=(*verdict.notes, *lines),
        )
    return dataclasses.replace(record, quarantine=section), verdict


def render_merge(outcome: MergeOutcome, *, markup: bool, width: int = 100) -> str:
    """What was merged, where it was written and, when gated, the verdict (last)."""
    record = outcome.record
    outcomes: dict[str, int] = {}
    for test in record.tests:
        outcomes[test.outcome] = outcomes.get(test.outcome, 0) + 1
    counted = ", ".join(f"{n} {name}" for name, n in sorted(outcomes.items())) or "no tests"
    runs = outcome.shard_run_ids
    lines = [
        f"rtgov: merged {len(runs)} run(s) ({', '.join(runs)}) into run {record.run_id}",
        f"rtgov: {len(record.tests)} tests ({counted}), {len(record.fixtures)} fixtures; "
        f"workers {', '.join(record.workers) or '-'}",
        f"rtgov: written to {outcome.path}",
    ]
    text = "".join(line + "\n" for line in lines)
    if outcome.verdict is not None:
        from pytest_rtgov.report.terminal import render_verdict

        text += render_verdict(outcome.verdict, markup=markup, width=width)
    return text
