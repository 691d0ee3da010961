"""``rtgov keys``, ``rtgov verify``, ``rtgov prove``, ``rtgov verify-proof``, ``rtgov ledger``.

Exit codes (besides the CLI's 0, 2, 3, 4):
    10  a ledger frame does not check (damaged header, payload not matching its leaf hash)
    11  a leaf is not canonical JSON of a known kind, or a run record file was edited
    12  the log does not hash to a signed root: a leaf was changed, removed, added or moved
    13  a checkpoint is malformed, its signature fails, or it is untrusted or out of order
        (or the repository's keyring disagrees with $RTGOV_TRUSTED_KEYS/$RTGOV_KEYRING_SHA256)
    14  a consistency proof fails, or the trusted checkpoint is not a prefix of the log
    15  a baseline or artifact file does not match its signature, or a stage cache entry's
        signature, key, objects or chain does not check
    16  an inclusion proof does not verify

The codes are ExitCode.LEDGER_FRAME ... PROOF; commands raise typed errors (a
VerifyFailure carries its code) and ``cli.main.exit_code`` maps them.
``rtgov verify``: 3 when --dir names no directory, 4 when it names a file.
``rtgov ledger recover``: 3 no ledger, 7 another writer held the ledger lock past
RTGOV_LEDGER_TIMEOUT (default 60 s), 10 the ledger cannot be recovered.
``rtgov ledger push|pull``: :mod:`pytest_rtgov.cli.ledger_sync`.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.options import add_gates, add_keyring, add_out, add_signing_key, paths
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.keys import format_verifier_key
from pytest_rtgov.errors import NotFoundError

__all__ = ["add_parsers", "run"]

TRUSTED_CHECKPOINT = Path("rtgov.checkpoint")


def _trust_arguments(parser: argparse.ArgumentParser) -> None:
    add_keyring(parser)
    parser.add_argument(
        "--require-signature",
        action="store_true",
        help="accept only keyring keys, not this machine's local key (implied by CI=true)",
    )


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="generate a signing key or list trusted keys")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    gen = ksub.add_parser("generate", help="new Ed25519 key; its public half joins the keyring")
    gen.add_argument("name", help="key name, e.g. ci.example.org/ml-gates")
    add_out(gen, "private key file (mode 0600; default: DIR/keys/NAME.key)")
    gen.add_argument(
        "--force",
        action="store_true",
        help="write the private key inside a git work tree even where git does not ignore it",
    )
    add_keyring(gen, "the keyring the public key joins")
    show = ksub.add_parser("show", help="the keyring and this machine's local key")
    add_keyring(show)

    verify = sub.add_parser("verify", help="check the ledger, checkpoints, baseline and artifacts")
    _trust_arguments(verify)
    verify.add_argument(
        "--since",
        type=Path,
        default=None,
        help=f"a trusted earlier checkpoint file (default: {TRUSTED_CHECKPOINT}, if committed)",
    )
    add_gates(verify, "gates file naming the baseline to check, if present")
    verify.add_argument(
        "--stage-store",
        dest="store",
        default=None,
        metavar="URL",
        help="the @stage cache to check (default: the project's rtgov_stage_store, else "
        "stages/ in the state directory, if present)",
    )

    prove = sub.add_parser("prove", help="print an inclusion proof for a ledger record")
    prove.add_argument("run", nargs="?", default="latest", help="run id or latest")
    which = prove.add_mutually_exclusive_group()
    which.add_argument("--test", default=None, help="prove this test's record (node id)")
    which.add_argument("--fixture", default=None, help="prove this fixture's record (name)")
    which.add_argument("--index", type=int, default=None, help="prove the leaf at this index")
    add_out(prove, "write the proof here (default: stdout)")

    check = sub.add_parser("verify-proof", help="check an inclusion proof offline")
    check.add_argument("proof", type=Path)
    _trust_arguments(check)

    ledger = sub.add_parser("ledger", help="ledger maintenance")
    lsub = ledger.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    recover = lsub.add_parser(
        "recover",
        help="set a torn append aside and sign a checkpoint over the complete records "
        "(the next session does the same)",
    )
    add_signing_key(recover, "the recovery checkpoint")
    from pytest_rtgov.cli import ledger_sync

    ledger_sync.add_parsers(lsub, _trust_arguments)  # push, pull (docs/ledger.md)


def _trust(args: argparse.Namespace) -> Any:
    from pytest_rtgov.store.keys import require_signatures

    return paths(args).trust(required=require_signatures(args.require_signature))


def run(args: argparse.Namespace) -> int:
    """``rtgov keys|verify|prove|verify-proof|ledger``: 0, or a typed error."""
    commands = {
        "keys": _keys,
        "verify": _verify,
        "prove": _prove,
        "verify-proof": _verify_proof,
        "ledger": _ledger,
    }
    return commands[args.command](args)


def _keys(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.keys import generate_key, local_verifiers, read_keyring

    where = paths(args)
    if args.keys_command == "generate":
        out = args.out or where.keys_dir / f"{args.name.replace('/', '_')}.key"
        from pytest_rtgov.cli.project import check_private_key_path
        from pytest_rtgov.store.paths import create_state_dir

        if args.out is None:
            create_state_dir(where.state_dir)  # with its .gitignore: keys/ is never committed
        check_private_key_path(out, force=args.force)  # exit 2 where `git add -A` takes it
        signer = generate_key(args.name, out, where.keyring)
        print(f"private key: {out} (mode 0600; keep it secret, e.g. as a CI secret)")
        print(f"public key added to {where.keyring}: commit that file")
        print(format_verifier_key(signer.verifier()))
        return 0
    ring = read_keyring(where.keyring) if where.keyring.exists() else []
    print(f"keyring {where.keyring}: {len(ring)} key(s)")
    for verifier in ring:
        print(f"  {format_verifier_key(verifier)}")
    for verifier in local_verifiers(where.state_dir):
        print(f"local key (untrusted): {format_verifier_key(verifier)}")
    return 0


def _verify(args: argparse.Namespace) -> int:
    from pytest_rtgov.cli.stages import store_url
    from pytest_rtgov.core.quarantine import QUARANTINE_FILE
    from pytest_rtgov.store.verify import verify_all

    trust = _trust(args)
    if args.since is None and TRUSTED_CHECKPOINT.is_file():
        args.since = TRUSTED_CHECKPOINT
    # A VerifyFailure carries its code (3, 4, 10-15); an unreadable file is exit 4.
    report = verify_all(
        args.dir,
        trust,
        since=args.since,
        baseline_dir=paths(args).baseline_dir_if_gated(),
        stage_store=store_url(args),
        quarantine_file=paths(args).project[0] / QUARANTINE_FILE,
    )
    for warning in report.warnings:
        print(f"rtgov verify: warning: {warning}", file=sys.stderr)
    signed = ", ".join(trust.describe(name) for name in sorted(report.signed_by)) or "nobody"
    print(
        f"ledger intact: {report.leaves} leaves, {report.checkpoints} checkpoints signed by "
        f"{signed}, root {report.root.hex() if report.root else '-'}"
    )
    if report.trusted_prefix is not None:
        print(f"trusted checkpoint {args.since} (size {report.trusted_prefix}) is a prefix")
    print(
        f"{report.records_checked} run record file(s) match the ledger; "
        f"{report.seals_checked} signed baseline/artifact seal(s) verified"
    )
    if report.stage_entries:
        print(
            f"{report.stage_entries} stage cache entr"
            f"{'y' if report.stage_entries == 1 else 'ies'} verified (signature, objects, "
            "key, chain)"
        )
    for note in report.notes:
        print(f"note: {note}")
    for leaf, at, pruned in report.pruned:  # `rtgov gc`: recorded, so not missing
        more = f", ... ({len(pruned) - 10} more)" if len(pruned) > 10 else ""
        print(
            f"{len(pruned)} run record(s) pruned (by leaf {leaf} at {at}; the ledger keeps "
            f"their leaves): {', '.join(pruned[:10])}{more}"
        )
    return 0


def _find_leaf(args: argparse.Namespace, ledger: Any) -> int:
    from pytest_rtgov.core.ledger_records import parse_leaf
    from pytest_rtgov.store.runs import RunStore

    if args.index is not None:
        return int(args.index)
    try:
        run_id = RunStore(args.dir).resolve(args.run)
    except NotFoundError:
        from pytest_rtgov.store.prune import resolve_pruned

        pruned = resolve_pruned(args.dir, args.run)  # `rtgov gc` kept its leaves
        if pruned is None:
            raise
        run_id = pruned
    kind, key, want = "verdict", None, None
    if args.test is not None:
        kind, key, want = "test", "nodeid", args.test
    elif args.fixture is not None:
        kind, key, want = "fixture", "name", args.fixture
    needle = f'"run_id":"{run_id}"'.encode()
    for frame in ledger.frames():
        if needle not in frame.payload:
            continue
        leaf = parse_leaf(frame.payload)
        if (
            leaf["kind"] == kind
            and leaf.get("run_id") == run_id
            and (key is None or leaf.get(key) == want)
        ):
            return frame.index
    raise NotFoundError(f"no {kind} record {want or ''} of run {run_id} in {ledger.log_path}")


def _prove(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.ledger import Ledger
    from pytest_rtgov.store.verify.proofs import inclusion_proof

    ledger = Ledger(paths(args).ledger_dir)
    proof = inclusion_proof(ledger, _find_leaf(args, ledger))
    text = pretty_json(proof)
    if args.out:
        args.out.write_text(text, encoding="utf-8")
        print(f"proof of leaf {proof['leaf_index']} in a tree of {proof['tree_size']} "
              f"written to {args.out}")  # fmt: skip
    else:
        sys.stdout.write(text)
    return 0


def _verify_proof(args: argparse.Namespace) -> int:
    """An inclusion proof (``rtgov prove``), or a replay attestation (``rtgov replay``):
    the envelope's signature, the proof of the verdict leaf it names, and their match."""
    from pytest_rtgov.store.verify import VerifyFailure
    from pytest_rtgov.store.verify.proofs import check_inclusion_proof

    try:
        document = json.loads(args.proof.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise VerifyFailure(
            ExitCode.PROOF, str(args.proof), f"not a readable proof ({exc})"
        ) from None
    trust = _trust(args)
    if isinstance(document, dict) and "envelope" in document:
        from pytest_rtgov.cli.replay import verify_attestation

        return verify_attestation(document, trust, where=str(args.proof))
    if not isinstance(document, dict):
        raise VerifyFailure(ExitCode.PROOF, str(args.proof), "not a readable proof (not an object)")
    checked = check_inclusion_proof(document, trust, where=str(args.proof))
    print(f"proof verifies: leaf {checked.index} of {checked.size}, checkpoint signed by "
          f"{', '.join(checked.signers)}")  # fmt: skip
    print(checked.leaf.decode("utf-8", errors="replace"))
    return 0


def _ledger(args: argparse.Namespace) -> int:
    if args.ledger_command in ("push", "pull"):
        from pytest_rtgov.cli import ledger_sync

        return ledger_sync.run(args, _trust(args))
    return _recover(args)


def _recover(args: argparse.Namespace) -> int:
    """``rtgov ledger recover``: 0; NotFoundError (3) without a ledger; exit 7 when the
    lock stays held (``LedgerLockTimeout``), 10 for any other failure (``cli.main``)."""
    from datetime import datetime, timezone

    from pytest_rtgov.store.coverage import move_orphans
    from pytest_rtgov.store.keys import load_signing_key
    from pytest_rtgov.store.ledger import Ledger, append_session

    ledger = Ledger(paths(args).ledger_dir)
    if not ledger.exists():
        raise NotFoundError(f"no ledger in {ledger.directory}")

    def waiting(message: str) -> None:
        print(f"rtgov ledger: {message}", file=sys.stderr, flush=True)

    signing = load_signing_key(key_file=args.signing_key, state_dir=args.dir)
    result = append_session(
        ledger,
        [],
        signer=signing.signer,
        origin="",
        created_at=datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        on_wait=waiting,
    )
    moved = move_orphans(args.dir)
    for source, destination in moved:
        print(f"orphaned (no verdict leaf covers it): moved {source} to {destination}")
    if result is None:
        print("nothing to recover: every complete record is covered by a signed checkpoint")
        return 0
    if result.invalid is not None:
        print(f"rtgov ledger: warning: {result.invalid.describe()}", file=sys.stderr)
    if result.set_aside is not None:
        print(f"set aside an interrupted append in {result.set_aside}")
    print(
        f"{result.size} records kept; a recovery record and checkpoint "
        f"{result.checkpoint_path} signed by {signing.verifier.name} now cover them"
    )
    return 0
