"""``rtgov quarantine add|list|show|renew|remove|propose``: owned, expiring, signed entries.

Each change signs the entry with the project's signing key, rewrites
``rtgov.quarantine.json`` (every other entry kept byte for byte) and appends a
``quarantine`` ledger leaf. Bad input (a missing, too long or malformed field, an expiry
in the past or beyond ``[quarantine] max_days``, an unknown test or gate, a malformed
file) is exit 4 and writes nothing; ``propose`` is :mod:`.quarantine_propose`'s.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.options import add_format, add_gates, add_keyring, add_signing_key, paths
from pytest_rtgov.core.quarantine import (
    DEFAULT_MAX_DAYS,
    QUARANTINE_FILE,
    CheckedEntry,
    Entry,
    QuarantineEntryError,
)
from pytest_rtgov.core.quarantine_record import UNTRUSTED_STATES

__all__ = ["add_parsers", "run"]

_FIELDS = ("owner", "reason", "issue", "expires")
_HINTS = {
    "owner": "who fixes it",
    "reason": "why, in words",
    "issue": "the issue tracking the fix, a URL",
    "expires": "a date YYYY-MM-DD, at most [quarantine] max_days from today",
}


def add_parsers(sub: Any) -> None:
    q = sub.add_parser("quarantine", help="quarantine flaky tests and gates: owned, expiring")
    qsub = q.add_subparsers(dest="quarantine_command", required=True, metavar="ACTION")
    add = qsub.add_parser("add", help="quarantine a test or gate (a signed, expiring entry)")
    add.add_argument("subject", help="a test node id, gate:NAME or gate:NAME:SUBJECT")
    add.add_argument("--owner", default=None, help="who fixes it (required)")
    add.add_argument("--reason", default=None, help="why it is quarantined (required)")
    add.add_argument("--issue", default=None, help="the issue tracking the fix (required)")
    add.add_argument(
        "--expires", default=None, metavar="YYYY-MM-DD",
        help="the day it stops excusing failures (required; at most [quarantine] max_days on)",
    )  # fmt: skip
    add.add_argument(
        "--evidence", action="append", default=[], metavar="sha256:HEX",
        help="digest of evidence (a run record, an object), repeatable",
    )  # fmt: skip
    renew = qsub.add_parser("renew", help="extend an entry: a new reason and expiry")
    renew.add_argument("subject")
    renew.add_argument("--reason", default=None, help="why it needs longer (a new reason)")
    renew.add_argument("--expires", default=None, metavar="YYYY-MM-DD")
    renew.add_argument("--owner", default=None, help="a new owner (default: the entry's)")
    renew.add_argument("--issue", default=None, help="a new issue (default: the entry's)")
    remove = qsub.add_parser("remove", help="end a quarantine (fixed, or given up)")
    remove.add_argument("subject")
    remove.add_argument("--reason", default=None, help="why it ends (required)")
    for parser in (add, renew, remove):
        add_gates(parser, "gates file ([quarantine] max_days, the gate names)")
        add_keyring(parser)
        add_signing_key(parser, "the entry")
    listing = qsub.add_parser("list", help="every entry: subject, owner, issue, expiry, state")
    show = qsub.add_parser("show", help="one entry, its signed statement and its state")
    show.add_argument("subject")
    for parser in (listing, show):
        add_keyring(parser)
        _add_format(parser, "text or JSON (default: text)")
    propose = qsub.add_parser("propose", help="propose entries from the ledger's history")
    propose.add_argument("--window", type=int, default=30, help="runs to look back (30)")
    propose.add_argument(
        "--clean-runs", type=int, default=20,
        help="consecutive clean runs after which removal is proposed (20)",
    )  # fmt: skip
    propose.add_argument("--apply", action="store_true", help="write the proposed entries")
    propose.add_argument("--owner", default=None, help="owner of applied entries")
    propose.add_argument("--issue", default=None, help="issue of applied entries")
    propose.add_argument("--expires", default=None, metavar="YYYY-MM-DD")
    _add_format(propose, "the proposals as text or JSON (default: text)")
    add_gates(propose)
    add_keyring(propose)
    add_signing_key(propose, "applied entries")


def _add_format(parser: argparse.ArgumentParser, help: str) -> None:
    """``--format text|json``, and ``--json`` as a quiet short form of ``--format json``."""
    add_format(parser, ("text", "json"), "text", help)
    parser.add_argument(
        "--json", dest="format", action="store_const", const="json", help=argparse.SUPPRESS
    )


def run(args: argparse.Namespace) -> int:
    """``rtgov quarantine ACTION``: 0, or a typed error (3, 4, 5, 7)."""
    args.json = getattr(args, "format", "text") == "json"  # list, show, propose
    if args.quarantine_command == "propose":
        from pytest_rtgov.cli import quarantine_propose

        return int(quarantine_propose.run(args))
    commands = {"add": _add, "renew": _renew, "remove": _remove, "list": _list, "show": _show}
    return commands[args.quarantine_command](args)


def _today() -> date:
    """Today (UTC), or ``$RTGOV_TODAY`` as a session reads it."""
    from pytest_rtgov.store.quarantine_file import quarantine_today

    return quarantine_today()


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _root(args: argparse.Namespace) -> Path:
    return paths(args).project[0]


def _trust(args: argparse.Namespace) -> Any:
    from pytest_rtgov.store.keys import require_signatures

    return paths(args).trust(required=require_signatures(False))


def _entry(args: argparse.Namespace, what: str, **fields: Any) -> Entry:
    """An Entry from the options; a bad field names its option (exit 4)."""
    for name in _FIELDS:
        if name in fields and fields[name] is None:
            raise QuarantineEntryError(
                f"quarantine {what}: --{name} is required ({_HINTS[name]})", field=name
            )
    try:
        entry = Entry(**fields)
    except QuarantineEntryError as exc:
        raise _option_error(what, exc) from None
    from urllib.parse import urlsplit

    given = getattr(args, "issue", None)  # renew keeps an entry's issue as it was
    if given is not None and not (urlsplit(given).scheme and urlsplit(given).netloc):
        raise QuarantineEntryError(
            f"quarantine {what}: --issue: expected a URL where the fix is tracked "
            f"(https://host/...), got {given!r}",
            field="issue",
        )
    return entry


def _option_error(what: str, exc: QuarantineEntryError) -> QuarantineEntryError:
    option = f"--{exc.field}" if exc.field in (*_FIELDS, "evidence") else exc.field or "entry"
    if exc.field == "subject":
        option = "SUBJECT"
    text = str(exc).removeprefix(f"{exc.field}: ")
    return QuarantineEntryError(f"quarantine {what}: {option}: {text}", field=exc.field)


def _max_days(args: argparse.Namespace) -> int:
    where = paths(args)
    return where.load_gates().quarantine_max_days if where.gates_file.is_file() else (
        DEFAULT_MAX_DAYS
    )


def _checked_duration(args: argparse.Namespace, entry: Entry, what: str) -> Entry:
    try:
        return entry.check_duration(today=_today(), max_days=_max_days(args))
    except QuarantineEntryError as exc:
        raise _option_error(what, exc) from None


def _record(
    args: argparse.Namespace, signing: Any, action: str, checked: CheckedEntry, **extra: Any
) -> None:
    """Append the change's ``quarantine`` leaf and a signed checkpoint (exit 7 if refused)."""
    from pytest_rtgov.cli.signing import log_leaves
    from pytest_rtgov.core.quarantine import quarantine_leaf

    at = _now()
    leaf = quarantine_leaf(action, checked, at=at, signed_by=checked.keyid, **extra)
    log_leaves(args, [leaf], signing, at, f"the quarantine entry for {checked.entry.subject}")


def _signing_key(args: argparse.Namespace) -> Any:
    """The key that signs the entry and the ledger's checkpoint: a keyring key, or this
    machine's local key. Any other (exit 2) would sign an entry that excuses nothing and
    a checkpoint `rtgov verify` cannot check, from then on."""
    from pytest_rtgov.cli.signing import signing_key
    from pytest_rtgov.errors import InvalidOptionError

    signing = signing_key(args)
    trust = _trust(args)
    if not trust.is_trusted(signing.verifier) and signing.verifier not in trust.local:
        raise InvalidOptionError(
            f"signing key {signing.verifier.name} ({signing.source}) is neither in "
            f"{paths(args).keyring} nor this machine's local key: the entry would excuse "
            "nothing and `rtgov verify` could not check the ledger checkpoint it signs; "
            "add its public half to the keyring first"
        )
    return signing


def _warn_trust(checked: CheckedEntry) -> None:
    if checked.state != "valid":
        print(
            f"rtgov: warning: the entry is {checked.state} ({checked.detail}): it excuses "
            "nothing until a keyring key signs it (rtgov keys generate), and fails CI",
            file=sys.stderr,
        )


def _add(args: argparse.Namespace) -> int:
    from pytest_rtgov.cli.quarantine_subjects import check_subject_exists
    from pytest_rtgov.store.quarantine_file import (
        quarantine_path,
        read_quarantine_file,
        write_entry,
    )

    fields = {name: getattr(args, name) for name in _FIELDS}
    entry = _entry(
        args, "add", subject=args.subject, created=_today().isoformat(),
        evidence=tuple(args.evidence), **fields,
    )  # fmt: skip
    entry = _checked_duration(args, entry, "add")
    root = _root(args)
    existing = read_quarantine_file(quarantine_path(root), today=_today())
    if entry.subject in existing.subjects():
        raise QuarantineEntryError(
            f"quarantine add: {entry.subject!r} is already quarantined in {existing.path}: "
            "`rtgov quarantine renew` it (a new reason and expiry) or remove it first",
            field="subject",
        )
    check_subject_exists(paths(args), root, entry)
    signing = _signing_key(args)
    checked, _ = write_entry(root, entry, signing.signer, trust=_trust(args), today=_today())
    _record(args, signing, "add", checked, reason=entry.reason)
    print(
        f"quarantined {entry.subject} until {entry.expires} (owner {entry.owner}, issue "
        f"{entry.issue}); entry {checked.id} in {quarantine_path(root)}\n"
        f"review and commit it: git add {QUARANTINE_FILE}"
    )
    _warn_trust(checked)
    return 0


def _current(args: argparse.Namespace, subject: str) -> tuple[Any, CheckedEntry]:
    """The file and the checked entry of ``subject`` (exit 3 when there is none)."""
    from pytest_rtgov.store.quarantine_file import (
        EntryNotFoundError,
        QuarantineFile,
        check_file,
        quarantine_path,
        read_quarantine_file,
        revoked_entries,
    )

    file = read_quarantine_file(quarantine_path(_root(args)), today=_today())
    envelope = file.get(subject)
    if envelope is None:
        raise EntryNotFoundError(
            f"{file.path}: no entry for {subject!r} (entries: "
            f"{', '.join(file.subjects()) or 'none'})"
        )
    one = QuarantineFile(file.path, None, ((subject, envelope),))
    revoked = revoked_entries(args.dir)  # as `list`, a session and verify see it
    return file, check_file(one, _trust(args), today=_today(), revoked=revoked).entries[0]


def _renew(args: argparse.Namespace) -> int:
    from pytest_rtgov.errors import RefusedError
    from pytest_rtgov.store.quarantine_file import write_entry

    _, old = _current(args, args.subject)
    if old.state in UNTRUSTED_STATES and not _verified_locally(args, old):
        raise RefusedError(
            f"quarantine renew: the entry for {args.subject!r} is {old.state} ({old.detail}): "
            "its content is not vouched for, so it is not re-signed; remove it and add it anew"
        )
    if args.reason is not None and args.reason.strip() == old.entry.reason.strip():
        raise QuarantineEntryError(
            f"quarantine renew: --reason: expected a new reason, got the entry's own "
            f"({old.entry.reason!r}); say why it needs longer",
            field="reason",
        )
    entry = _entry(
        args, "renew", subject=old.entry.subject, reason=args.reason, expires=args.expires,
        owner=args.owner or old.entry.owner, issue=args.issue or old.entry.issue,
        created=_today().isoformat(), evidence=old.entry.evidence, action="renew",
    )  # fmt: skip
    entry = _checked_duration(args, entry, "renew")
    signing = _signing_key(args)
    root = _root(args)
    checked, _ = write_entry(root, entry, signing.signer, trust=_trust(args), today=_today())
    _record(args, signing, "renew", checked, reason=entry.reason, replaces=old.id)
    print(f"renewed {entry.subject} until {entry.expires}; entry {checked.id}")
    _warn_trust(checked)
    return 0


def _verified_locally(args: argparse.Namespace, checked: CheckedEntry) -> bool:
    """An ``untrusted`` entry whose signature this machine's local key verified."""
    from pytest_rtgov.core.dsse import envelope_keyid

    local = {envelope_keyid(v) for v in _trust(args).local}
    return checked.state == "untrusted" and checked.keyid in local


def _remove(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.quarantine_file import remove_entry

    if args.reason is None or not args.reason.strip():
        raise QuarantineEntryError(
            f"quarantine remove: --reason: expected why the quarantine ends, got {args.reason!r}",
            field="reason",
        )
    _current(args, args.subject)  # exit 3 before the key is loaded
    signing = _signing_key(args)
    old = remove_entry(_root(args), args.subject, trust=_trust(args), today=_today())
    _record(args, signing, "remove", old, reason=args.reason)
    print(f"removed the quarantine of {args.subject} (entry {old.id})")
    return 0


def _list(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.quarantine_file import load_quarantine, quarantine_path

    root = _root(args)
    quarantine = load_quarantine(root, _trust(args), today=_today(), state_dir=args.dir)
    if args.json:
        print(json.dumps([c.to_dict() for c in quarantine.entries], indent=1))
        return 0
    if not quarantine.entries:
        print(f"no quarantine entries ({quarantine_path(root)})")
        return 0
    rows = [("SUBJECT", "OWNER", "ISSUE", "EXPIRES", "STATE")] + [
        (c.entry.subject, c.entry.owner, c.entry.issue, c.entry.expires, c.state)
        for c in quarantine.entries
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*cells, row[4]]))
    problems = quarantine.problems()
    if problems:
        print(f"{len(problems)} entr{'y excuses' if len(problems) == 1 else 'ies excuse'} nothing: "
              + "; ".join(f"{c.entry.subject}: {c.state}" for c in problems))  # fmt: skip
    return 0


def _show(args: argparse.Namespace) -> int:
    import base64

    file, checked = _current(args, args.subject)
    envelope = file.get(args.subject)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    if args.json:
        document = {"entry": checked.to_dict(), "statement": statement, "envelope": envelope}
        print(json.dumps(document, indent=1, sort_keys=True))
        return 0
    for key in ("subject", "owner", "reason", "issue", "created", "expires", "action"):
        print(f"{key}: {getattr(checked.entry, key)}")
    print(f"evidence: {', '.join(checked.entry.evidence) or '-'}")
    print(f"state: {checked.state}{f' ({checked.detail})' if checked.detail else ''}")
    print(f"signed by: {checked.keyid or '-'}")
    print(f"entry: {checked.id} in {file.path}")
    print("statement:")
    print(json.dumps(statement, indent=1, sort_keys=True))
    return 0
