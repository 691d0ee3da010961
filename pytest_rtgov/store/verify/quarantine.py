"""``rtgov verify``, the quarantine file: each entry's signature and expiry.

Every entry that is not ``valid`` is a finding naming it (its index in the file, its
subject, owner and issue). A ``tampered`` entry (a known key's signature fails: it was
edited after signing) fails the check as a baseline whose seal fails does; ``unsigned``
and ``untrusted`` entries fail it where signatures are required (``CI=true``,
``--require-signature``) and are warnings elsewhere; an ``expired`` entry is a warning
(it excuses nothing: a session fails on it). A malformed file fails with exit 4.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.quarantine import CheckedEntry, QuarantineFileError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.verify.failures import EXIT_SEAL, VerifyFailure, VerifyReport

__all__ = ["verify_quarantine"]


def _finding(path: Path, index: int, checked: CheckedEntry) -> tuple[str, str]:
    e = checked.entry
    where = f"{path}: entries[{index}] ({e.subject})"
    what = {
        "tampered": "its signature does not verify: edited after it was signed",
        "unsigned": "not signed",
        "untrusted": "not signed by a keyring key",
        "expired": f"{checked.detail or f'expired on {e.expires}'}: it excuses nothing; "
        "renew or remove it",
        "revoked": "the ledger records its removal or replacement: a signed envelope put "
        "back from history",
    }[checked.state]
    detail = f" ({checked.detail})" if checked.detail and checked.state != "expired" else ""
    return where, f"{what}{detail}; owner {e.owner}, issue {e.issue}"


def verify_quarantine(
    path: Path,
    trust: Trust,
    report: VerifyReport,
    *,
    today: date,
    state_dir: Path | None = None,
) -> None:
    """Check ``path`` (``rtgov.quarantine.json``; absent: nothing to check) against the
    keyring and against ``state_dir``'s ledger (an entry it removed or replaced)."""
    from pytest_rtgov.store.quarantine_file import (
        check_file,
        read_quarantine_file,
        revoked_entries,
    )

    try:
        file = read_quarantine_file(path, today=today)
    except QuarantineFileError as exc:
        raise VerifyFailure(ExitCode.BAD_INPUT, exc.source, f"at {exc.place}: expected "
                            f"{exc.expected}") from exc  # fmt: skip
    if file.digest is None:
        return
    index = {subject: i for i, subject in enumerate(file.subjects())}
    revoked = revoked_entries(state_dir) if state_dir is not None else {}
    checked = check_file(file, trust, today=today, revoked=revoked).entries
    for entry in checked:
        if entry.active:
            continue
        where, reason = _finding(path, index[entry.entry.subject], entry)
        fails = entry.state == "tampered" or (
            trust.required and entry.state in ("unsigned", "untrusted", "revoked")
        )
        if fails:
            raise VerifyFailure(EXIT_SEAL, where, reason)
        report.warnings.append(f"{where}: {reason}")
    valid = sum(1 for c in checked if c.active)
    report.notes.append(
        f"{path}: {len(checked)} quarantine entr{'y' if len(checked) == 1 else 'ies'}, "
        f"{valid} valid"
    )
