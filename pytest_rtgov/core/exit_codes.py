"""What each :class:`~pytest_rtgov.core.constants.ExitCode` means to each face, the pure
mapping of the error vocabulary to codes, and the table ``docs/usage.md`` shows."""

from __future__ import annotations

from typing import Literal

from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.errors import IntegrityError, InvalidOptionError, NotFoundError, RefusedError

__all__ = ["MEANINGS", "TABLE_BEGIN", "TABLE_END", "Face", "exit_code_for", "render_table"]

Face = Literal["cli", "session"]

# code: (what it means to the rtgov command, what it means to a pytest session)
MEANINGS: dict[ExitCode, tuple[str, str]] = {
    ExitCode.OK: ("success", "tests passed, gates held"),
    ExitCode.TESTS_FAILED: ("-", "tests failed (pytest)"),
    ExitCode.USAGE: (
        "bad arguments; a refresh or sign with `CI=true` and no `--reason`, or of a baseline "
        "whose seal fails without `--reason`; a signing key not in the keyring where "
        "`CI=true`; an output file that cannot be written; a format whose extra is not "
        "installed (`export --format prometheus` without `[exporters]`); `ledger push`, `pull`: "
        "a URL whose fsspec driver is not installed, a push to a storage without the "
        "conditional write rtgov uses (S3 or a directory); `quarantine add|renew|remove`: "
        "a signing key neither in the keyring nor this machine's local key",
        "interrupted (pytest)",
    ),
    ExitCode.NOT_FOUND: (
        "no such run, baseline or ledger; `verify --dir` names no directory; `stages show`: "
        "no entry of that stage; `stages recheck`: the stage was never run, or has no valid "
        "entry to compare with; `replay --test/--stage`: the run recorded no such test or "
        "stage; `replay --schedule`: the run recorded no schedule; `ledger push`: no signed "
        "ledger here; `quarantine show|renew|remove`: no entry of that subject",
        "internal error (pytest)",
    ),
    ExitCode.BAD_INPUT: (
        "a record, baseline, gates, key, keyring or `latest` file that cannot be read or does "
        "not match its schema (the message names the file, the place, what was expected); a "
        "run record the ledger does not cover given to a command that acts on it; a ledger "
        "whose frames do not check where a command needs its coverage; `replay`: a "
        "`[[replay]]` rule that selects no recorded checkpoint or has a negative bound, a "
        "replay session that wrote no record or ran past `--timeout`; `races`: a session that "
        "wrote no record or ran past `--timeout`; `ledger push`, `pull`: "
        "the shared storage cannot be read or written (no bucket, no credentials); "
        "`quarantine add|renew|remove`: a missing, too long or malformed field (an `--issue` "
        "that is not a URL), an expiry "
        "not after today or beyond `[quarantine] max_days`, a test that does not collect, a "
        "gate `gates.toml` does not name, a subject already quarantined, a renewal with the "
        "same reason; a malformed `rtgov.quarantine.json` (any `quarantine` command, "
        "`verify`)",
        "usage error: a bad option, marker, gates file, keyring or state directory, an "
        "option whose extra is not installed, or a schedule that cannot be planned (more "
        "workers than tests) (pytest)",
    ),
    ExitCode.REFUSED: (
        "`baseline refresh` from a run whose tests did not pass; `replay`: a record that does "
        "not match its verdict leaf (edited), recorded uncommitted changes this working tree "
        "does not have, or a recorded commit missing from the repository; `ledger push`: "
        "another push landed first, or the shared ledger has leaves this one lacks (pull, "
        "`--rebase` when both have their own, then push again); `ledger pull`: leaves here no "
        "checkpoint signs (`ledger recover` first); `quarantine renew`: an entry that is "
        "unsigned, untrusted, tampered or revoked (remove it and add it anew)",
        "no tests collected (pytest)",
    ),
    ExitCode.GATE_BREACHED: (
        "`merge --gate`: a gate of the merged run breached; `stages recheck`: a "
        "nondeterminism finding (different outputs under one key); `replay`: a checkpoint "
        "diverged (the first divergence is named); `replay --schedule`: the replay did not "
        "follow the recorded plan (the first deviation and a reproducing command are named); "
        "`races`: a test's outcome or checkpoint digests depend on the schedule (each is "
        "named with its reproducing seed)",
        "tests passed but a gate breached, or no baseline where one is required; a stage's "
        "nondeterminism finding; `--rtgov-determinism-check`: a checkpoint differs between "
        "the two runs of its test; `--rtgov-schedule`: a worker did not run its planned "
        "sequence (the first deviation is named); an expired quarantine entry names a test or "
        "gate of the session (its owner and issue are named)",
    ),
    ExitCode.INTEGRITY: (
        "a baseline, merged run or quarantine entry written but not signed or logged in the "
        "ledger; "
        "`ledger recover`, `ledger pull` (`push` to a directory): another writer held the "
        "lock past the timeout; `gc`: "
        "its prune leaf could not be logged (nothing deleted); `stages recheck`: the entry "
        "was refused where signatures are required; `audit`: a gated verdict or gate result "
        "does not re-derive from the ledger, an input it kept is missing or corrupt, or "
        "(`--strict`) a gated run recorded no inputs",
        "the evidence cannot be trusted or kept: the ledger does not verify or cannot be "
        "appended to, the baseline's seal fails, a recorded baseline is gone, the run "
        "record cannot be written, or (signatures required) a quarantine entry is unsigned, "
        "untrusted, tampered or revoked",
    ),
    ExitCode.INCOMPARABLE: (
        "`compare`: the two sides are not comparable; `replay`: the replaying environment's "
        "fingerprint differs from the record's (the fields are named; `--allow-env-drift` "
        "replays anyway)",
        "-",
    ),
    ExitCode.NOT_MERGEABLE: (
        "`merge`: the records are not shards of one run, or shards run under "
        "`--rtgov-schedule` did not follow one schedule (the shard and the first deviation "
        "are named)",
        "-",
    ),
    ExitCode.LEDGER_FRAME: (
        "a ledger frame does not check (`verify`, `prove`, `compare`, `graph`, `report`, "
        "`audit`); "
        "`ledger recover` cannot recover the ledger; `ledger push`, `pull`: a frame of the "
        "shared log does not check",
        "-",
    ),
    ExitCode.LEDGER_LEAF: (
        "a ledger leaf is not canonical JSON of a known kind, or a run record file was "
        "edited, is missing or is orphaned (`verify`, `compare`, `graph`, `report`, `audit`; "
        "`ledger push`, `pull`: a leaf of the shared log)",
        "-",
    ),
    ExitCode.LEDGER_ROOT: (
        "the log does not hash to a signed root (`verify`, `compare`, `graph`, `report`, "
        "`audit`; `ledger push`, `pull`: the shared log, or it is missing)",
        "-",
    ),
    ExitCode.CHECKPOINT: (
        "a checkpoint is malformed, unsigned, untrusted or out of order (`audit`: no signed "
        "checkpoint), or the keyring "
        "disagrees with `RTGOV_TRUSTED_KEYS` / `RTGOV_KEYRING_SHA256`; `ledger push`, `pull`: the "
        "shared checkpoint (unreadable, unsigned or untrusted)",
        "-",
    ),
    ExitCode.HISTORY: (
        "a consistency proof fails, or the trusted checkpoint is not a prefix of the log; "
        "`ledger push`, `pull`: a fork, the shared ledger and this one share no history (pull "
        "without `--rebase`: neither extends the other)",
        "-",
    ),
    ExitCode.SEAL: (
        "a baseline, artifact or stage cache entry does not match its seal, or a stage "
        "entry's key or chain does not check (`verify`); a quarantine entry is tampered, or "
        "(signatures required) unsigned, untrusted or revoked (`verify`)",
        "-",
    ),
    ExitCode.PROOF: ("`verify-proof`: the inclusion proof does not verify", "-"),
}

TABLE_BEGIN = "<!-- exit-codes: generated from pytest_rtgov.core.exit_codes; do not edit -->"
TABLE_END = "<!-- /exit-codes -->"


def exit_code_for(error: BaseException, *, face: Face = "cli") -> ExitCode:
    """The exit code ``error`` means by the vocabulary of :mod:`pytest_rtgov.errors`.

    An error that carries its own ``exit_code`` (``rtgov verify``'s failures) keeps it.
    In a pytest session every error before the tests is a usage error (4) and every
    failed check is 7; the CLI tells a missing thing (3) and a bad argument (2) apart.

    >>> exit_code_for(NotFoundError("x")), exit_code_for(NotFoundError("x"), face="session")
    (<ExitCode.NOT_FOUND: 3>, <ExitCode.BAD_INPUT: 4>)
    """
    carried = getattr(error, "exit_code", None)
    if isinstance(carried, int) and carried in ExitCode._value2member_map_:
        return ExitCode(carried)
    if isinstance(error, IntegrityError):
        return ExitCode.INTEGRITY
    if face == "session":
        return ExitCode.BAD_INPUT
    if isinstance(error, InvalidOptionError):
        return ExitCode.USAGE
    if isinstance(error, NotFoundError):
        return ExitCode.NOT_FOUND
    if isinstance(error, RefusedError):
        return ExitCode.REFUSED
    return ExitCode.BAD_INPUT  # a ReadError, any other RtgovError, an OSError


def render_table() -> str:
    """The markdown table of every exit code, between :data:`TABLE_BEGIN` and :data:`TABLE_END`."""
    lines = [
        TABLE_BEGIN,
        "",
        "| code | name | `rtgov` command | `pytest --rtgov` session |",
        "|---|---|---|---|",
    ]
    for code in ExitCode:
        cli, session = MEANINGS[code]
        lines.append(f"| {int(code)} | `{code.name}` | {cli} | {session} |")
    lines += ["", TABLE_END]
    return "\n".join(lines) + "\n"
