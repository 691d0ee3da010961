"""``rtgov replay RUN``: re-run a recorded session and prove its checkpoints bit for bit.

The steps (docs/replay.md): read the record only if its ``verdict`` leaf covers it
(else refused, exit 5); check the ``[[replay]]`` rules of the gates file against the
recorded checkpoints; get the recorded code (store/replay_run.py: in place, or a
temporary git worktree at the recorded commit); run the recorded node ids in the
record's order with the recorded determinism-relevant environment, every stage
executed and every checkpoint kept, into ``<state>/replays/<id>/state``; compare each
checkpoint in causal order (core/replay.py); append a signed ``replay`` leaf; write a
DSSE-signed SLSA VSA with the verdict leaf's inclusion proof, and an HTML page.

Exit codes: 0 identical or within tolerance, 6 diverged, 8 not comparable (the
environment drifted; ``--allow-env-drift`` replays anyway), 5 refused input (an edited
record, uncommitted changes that are gone, a commit missing), 3 no such run, 4 a bad
gates file or rule, or a replay session that recorded nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.options import add_gates, add_keyring, add_signing_key, paths
from pytest_rtgov.core.canonical import canonical_json, pretty_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.errors import InvalidOptionError, NotFoundError, RecordFormatError
from pytest_rtgov.logs import log_event

__all__ = ["add_parsers", "run", "verify_attestation"]

REPLAYS_DIR = "replays"


def add_parsers(sub: Any) -> None:
    replay = sub.add_parser(
        "replay", help="re-run a recorded session and compare every checkpoint bit for bit"
    )
    replay.add_argument("run", nargs="?", default="latest", help="run id or latest")
    which = replay.add_mutually_exclusive_group()
    which.add_argument("--test", action="append", metavar="NODEID",
                       help="replay this recorded test only (repeatable)")  # fmt: skip
    which.add_argument("-k", dest="keyword", metavar="EXPR",
                       help="replay the recorded tests pytest's -k EXPR selects")  # fmt: skip
    which.add_argument("--stage", metavar="NAME",
                       help="replay the first test that requested this @stage fixture")  # fmt: skip
    replay.add_argument("--schedule", action="store_true",
                        help="run the run's recorded schedule again (its plan, workers, order "
                        "and seeds) and check it was followed")  # fmt: skip
    replay.add_argument("--allow-env-drift", action="store_true",
                        help="replay in an environment whose fingerprint differs from the "
                        "record, naming the drifted fields as candidate causes")  # fmt: skip
    replay.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                        help="set a variable in the replay instead of its recorded value "
                        "(a deliberate variation; repeatable)")  # fmt: skip
    replay.add_argument("--timeout", type=float, default=None, metavar="SECONDS",
                        help="stop the replay session after this long")  # fmt: skip
    add_gates(replay, "gates file whose [[replay]] rules give the tolerances")
    add_keyring(replay)
    add_signing_key(replay, "the replay leaf's checkpoint and the attestation")


def _overrides(items: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name or not name.replace("_", "").isalnum():
            raise InvalidOptionError(f"--env {item!r}: expected NAME=VALUE")
        out[name] = value
    return out


def _record(args: argparse.Namespace) -> tuple[Any, str]:
    """The record, read only when its verdict leaf covers it; and the run id."""
    from pytest_rtgov.store.replay_run import ReplayRefusedError
    from pytest_rtgov.store.runs import RunStore, UncoveredRecordError

    store = RunStore(args.dir)
    run_id = store.resolve(args.run)
    try:
        return store.read_covered(run_id), run_id
    except UncoveredRecordError as exc:
        raise ReplayRefusedError(f"refused: {exc}") from None
    except RecordFormatError as exc:
        raise ReplayRefusedError(f"refused: the record cannot be read: {exc}") from None


def _verdict_leaf(state_dir: Path, run_id: str) -> tuple[int, bytes]:
    from pytest_rtgov.store.coverage import VERDICT_PREFIX, signed_leaves

    found = None
    for index, _, leaf in signed_leaves(state_dir, VERDICT_PREFIX):
        if leaf.get("run_id") == run_id:
            found = index, canonical_json(leaf)
    if found is None:
        raise NotFoundError(f"no signed verdict leaf of run {run_id} in {state_dir / 'ledger'}")
    return found


def _selection(args: argparse.Namespace, record: Any) -> tuple[list[str], str]:
    from pytest_rtgov.core.records import unescape_text
    from pytest_rtgov.core.replay_order import execution_order

    recorded = execution_order(record)
    if args.test:
        missing = [t for t in args.test if t not in recorded]
        if missing:
            raise NotFoundError(f"run {record.run_id} recorded no test {missing[0]!r}")
        chosen = [t for t in recorded if t in args.test]
        return [unescape_text(t) for t in chosen], f"--test {' '.join(chosen)}"
    if args.stage:
        for fixture in record.fixtures:
            for setup in fixture.setups:
                if fixture.name == args.stage and setup.stage is not None:
                    test = setup.requested_by
                    return [unescape_text(test)], f"--stage {args.stage} (via {test})"
        raise NotFoundError(f"run {record.run_id} recorded no setup of @stage {args.stage!r}")
    what = f"-k {args.keyword}" if args.keyword else "every recorded test"
    return [unescape_text(t) for t in recorded], what


def _rules(args: argparse.Namespace) -> tuple[Any, str]:
    """The ``[[replay]]`` rules of the gates file (none without one) and their digest."""
    import hashlib

    gates_file = paths(args).gates_file
    rules: tuple[Any, ...] = ()
    if gates_file.is_file():
        from pytest_rtgov.store.gates_file import load_gates

        rules = tuple(load_gates(gates_file).replay_rules)
    policy = canonical_json([rule.to_dict() for rule in rules])
    return rules, hashlib.sha256(policy).hexdigest()


def _loader(stores: list[Any], stage_store: Any) -> Any:
    """``load(ref)``: a checkpoint's array from the kept objects, or a stage output's
    from the stage cache (``stage_store``: its backend); None when neither holds it (a
    digest-only comparison)."""
    import hashlib

    from pytest_rtgov.store.objects import ObjectMissingError
    from pytest_rtgov.store.stage_cache import load_array, object_rel

    def load(ref: Any) -> Any:
        digest = ref.checkpoint.sha256
        for store in stores:
            try:
                return load_array(store.get(digest))
            except ObjectMissingError:
                continue
        hexdigest = digest.removeprefix("sha256:")
        data = stage_store.read(object_rel(hexdigest)) if ref.checkpoint.kind == "output" else None
        if data is not None and hashlib.sha256(data).hexdigest() == hexdigest:
            return load_array(data)
        return None

    return load


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.core import replay as core
    from pytest_rtgov.store import replay_run
    from pytest_rtgov.store.runs import new_run_id

    if getattr(args, "schedule", False):  # cli/replay_schedule.py
        from pytest_rtgov.cli.replay_schedule import run as replay_schedule

        return replay_schedule(args)
    overrides = _overrides(args.env)
    record, run_id = _record(args)
    leaf_index, verdict_leaf = _verdict_leaf(args.dir, run_id)
    rules, policy_sha256 = _rules(args)
    nodeids, selection = _selection(args, record)
    recorded = core.checkpoint_refs(record)
    from pytest_rtgov.core.gates_config import GatesConfigError

    core.check_rules_used(
        rules, recorded, source=str(paths(args).gates_file), error=GatesConfigError
    )
    replay_id = new_run_id()
    home = args.dir / REPLAYS_DIR / replay_id
    state = home / "state"
    command = replay_run.replay_command(
        nodeids, state_dir=state.absolute(), keyword=args.keyword,
        xdist=replay_run.xdist_installed(),
    )  # fmt: skip

    def announce(plan: replay_run.CodePlan, changed: replay_run.Changed) -> None:
        print(f"rtgov replay: run {run_id} ({selection}); code: {plan.how}", flush=True)
        for name, have, want in changed:
            print(f"  environment: {name}={want if want is not None else '(unset)'} "
                  f"(here: {have if have is not None else 'unset'})")  # fmt: skip
        log_event("replay.started", run_id=run_id, replay_id=replay_id, code=plan.how,
                  selection=selection, restored=[name for name, _, _ in changed])  # fmt: skip

    session = replay_run.replay_session(
        record.environment, command, run_id=run_id, state=state, overrides=overrides,
        timeout=args.timeout, what="the replay session", announce=announce,
    )  # fmt: skip
    plan, done, replayed, seconds = session.code, session.done, session.record, session.seconds
    from pytest_rtgov.store.objects import ObjectStore
    from pytest_rtgov.store.stage_cache import LocalBackend

    load = _loader(
        [ObjectStore.of_state_dir(args.dir), ObjectStore.of_state_dir(state)],
        LocalBackend(args.dir / "stages"),
    )
    drift = core.environment_drift(record.environment, replayed.environment)
    comparison = core.compare(record, replayed, load=load, rules=rules)
    result = core.decide(comparison, drift, allow_env_drift=args.allow_env_drift)
    at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    summary = {
        "run_id": run_id,
        "replay_id": replay_id,
        "at": at,
        **result.to_dict(),
        "code": {"commit": plan.commit, "how": plan.how},
        "selection": selection,
        "policy_sha256": policy_sha256,
        "verdict_leaf": leaf_index,
        "tests_exit_status": done.returncode,
        "seconds": round(seconds, 3),
    }
    _log_and_attest(args, summary, verdict_leaf, home)
    first = summary.get("first_divergence") or {}
    log_event("replay.done", run_id=run_id, replay_id=replay_id, outcome=summary["outcome"],
              counts=summary.get("counts"), seconds=summary["seconds"],
              first=f"{first.get('owner')} :: {first.get('checkpoint')}" if first else None,
              exit_status=int(result.exit_code))  # fmt: skip
    from pytest_rtgov.report.replay import render_html, render_terminal

    (home / "replay.html").write_text(render_html(summary), encoding="utf-8")
    print(render_terminal(summary))
    print(f"replay of {len(nodeids)} test(s) in {seconds:.1f} s (pytest exited "
          f"{done.returncode}); attestation: {home / 'attestation.json'}; "
          f"page: {home / 'replay.html'}")  # fmt: skip
    return int(result.exit_code)


def _log_and_attest(
    args: argparse.Namespace, summary: dict[str, Any], verdict_leaf: bytes, home: Path
) -> None:
    """Append the signed ``replay`` leaf, then write the attestation bundle: the DSSE
    envelope of the VSA and the verdict leaf's inclusion proof (the checkpoint the
    append just signed covers it)."""
    from pytest_rtgov.cli.signing import log_leaves, signing_key
    from pytest_rtgov.core.dsse import PAYLOAD_TYPE_INTOTO, sign_envelope
    from pytest_rtgov.core.ledger_records import replay_leaf
    from pytest_rtgov.core.replay_attestation import BUNDLE_FORMAT, replay_statement
    from pytest_rtgov.measure.environment import distribution_version
    from pytest_rtgov.store.files import atomic_write
    from pytest_rtgov.store.ledger import Ledger
    from pytest_rtgov.store.verify.proofs import inclusion_proof

    signing = signing_key(args)
    log_leaves(args, [replay_leaf(summary)], signing, summary["at"], "the replay verdict")
    body = replay_statement(
        run_id=summary["run_id"], verdict_leaf=verdict_leaf, leaf_index=summary["verdict_leaf"],
        policy_sha256=summary["policy_sha256"], outcome=summary["outcome"],
        time_verified=summary["at"], version=distribution_version("pytest-rtgov"),
    )  # fmt: skip
    bundle = {
        "format": BUNDLE_FORMAT,
        "envelope": sign_envelope(body, PAYLOAD_TYPE_INTOTO, [signing.signer]),
        "input_proof": inclusion_proof(Ledger(paths(args).ledger_dir), summary["verdict_leaf"]),
    }
    atomic_write(home / "attestation.json", pretty_json(bundle).encode())


def verify_attestation(document: dict[str, Any], trust: Any, *, where: str) -> int:
    """``rtgov verify-proof`` of a replay attestation: the envelope signed by a trusted
    key, the inclusion proof of the verdict leaf, and the statement naming that leaf."""
    from pytest_rtgov.core.dsse import DsseError, parse_statement, verify_envelope
    from pytest_rtgov.core.replay_attestation import BUNDLE_FORMAT, check_replay_statement
    from pytest_rtgov.store.verify import VerifyFailure
    from pytest_rtgov.store.verify.proofs import check_inclusion_proof

    if document.get("format") != BUNDLE_FORMAT:
        raise VerifyFailure(ExitCode.PROOF, where, f"format is not {BUNDLE_FORMAT!r}")
    try:
        verified = verify_envelope(document["envelope"], trust.verifiers())
        statement = parse_statement(verified.payload)
    except (DsseError, KeyError, TypeError) as exc:
        raise VerifyFailure(ExitCode.PROOF, where, f"attestation: {exc}") from None
    if trust.required and not any(trust.is_trusted(v) for v in verified.signed_by):
        raise VerifyFailure(ExitCode.CHECKPOINT, where, "attestation not signed by a keyring key")
    proof = document.get("input_proof")
    if not isinstance(proof, dict):
        raise VerifyFailure(ExitCode.PROOF, where, "no input_proof of the verdict leaf")
    checked = check_inclusion_proof(proof, trust, where=f"{where}: input_proof")
    problems = check_replay_statement(statement, checked.leaf)
    if problems:
        raise VerifyFailure(ExitCode.PROOF, where, "; ".join(problems))
    predicate = statement["predicate"]
    signers = ", ".join(sorted(v.name for v in verified.signed_by))
    print(f"attestation verifies: {statement['subject'][0]['name']} replayed: "
          f"{predicate['verificationResult']} ({predicate['verifiedLevels'][0]}), signed by "
          f"{signers}; verdict leaf {checked.index} of {checked.size} proved, checkpoint "
          f"signed by {', '.join(checked.signers)}")  # fmt: skip
    print(json.dumps(predicate, indent=2, sort_keys=True))
    return 0
