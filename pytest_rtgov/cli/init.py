"""``rtgov init``: a project's first gate in one command. Writes a commented
``gates.toml`` that gates what the project has (:mod:`pytest_rtgov.cli.init_gates`), the
committed baseline folder it names, the state directory's ``.gitignore`` and the
keyring (the public half of the key that signs this machine's sessions), then prints
the next three commands. Nothing existing is overwritten without ``--force`` (exit 2)."""

from __future__ import annotations

import argparse
import os
import re
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.options import add_gates, add_keyring, paths
from pytest_rtgov.errors import InvalidOptionError

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["DEFAULT_BASELINE", "add_parsers", "run"]

DEFAULT_BASELINE = "rtgov-baseline"


def add_parsers(sub: Any) -> None:
    init = sub.add_parser(
        "init",
        help="start gating a project: gates.toml, a committed baseline folder, "
        ".rtgov/.gitignore and the keyring",
    )
    init.add_argument(
        "--baseline",
        default=DEFAULT_BASELINE,
        help=f"baseline folder to commit, relative to the gates file (default: {DEFAULT_BASELINE})",
    )
    init.add_argument(
        "--from",
        dest="from_run",
        default=None,
        metavar="RUN",
        help="gate what a recorded run measured (run id or latest), not what the test files show",
    )
    init.add_argument("--force", action="store_true", help="replace an existing gates file")
    add_gates(init, "gates file to write")
    add_keyring(init, "keyring the signing key's public half joins")


def _relative(path: Path) -> str:
    try:
        return path.resolve().relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(path)


def _check_targets(args: argparse.Namespace, where: Any) -> Path:
    """Refuse before writing anything: an existing gates file (without ``--force``) or a
    baseline folder git would not see. Returns the baseline folder."""
    gates = where.gates_file
    if gates.exists() and not args.force:
        raise InvalidOptionError(
            f"{gates}: already exists; refusing to overwrite it (edit it, or pass --force "
            "to write a new one)"
        )
    baseline = Path(args.baseline)
    if not baseline.is_absolute():
        baseline = gates.parent / baseline
    state = where.state_dir.resolve()
    if baseline.resolve() == state or baseline.resolve().is_relative_to(state):
        raise InvalidOptionError(
            f"--baseline {args.baseline}: inside the state directory {where.state_dir}, which "
            "git ignores (it holds runs, the ledger and private keys): choose a folder to commit"
        )
    return baseline


def _findings(args: argparse.Namespace, where: Any) -> Any:
    from pytest_rtgov.cli.init_gates import from_record, scan_tests
    from pytest_rtgov.store.runs import RunStore

    scanned = scan_tests(where.project[0])  # pytest's rootdir: node ids are relative to it
    if args.from_run is not None:
        return from_record(RunStore(where.state_dir).read(args.from_run), scanned)
    return scanned


def _validated(text: str, gates: Path, root: Path) -> Any:
    """The text as the session will read it: a bug here is a message, not a bad file."""
    from pytest_rtgov.core.gates_config import parse_gates
    from pytest_rtgov.store.gates_file import baseline_directory

    config = parse_gates(tomllib.loads(text), source=str(gates))
    baseline_directory(config, [root])
    return config


def _signing_key(state_dir: Path) -> Any:
    """The key that signs this machine's sessions: ``$RTGOV_SIGNING_KEY``, else the state
    directory's local key. Where there is none yet, it is made now with a name of its own
    (``dev-USER@HOST-XXXXXX``), not the ``rtgov-local-untrusted-HOST`` a session would give
    it: the keyring trusts it, and a name no other machine shares says so."""
    import getpass
    import secrets

    from pytest_rtgov.store.keys import (
        ENV_SIGNING_KEY,
        generate_key,
        load_signing_key,
        local_host,
        local_key_path,
    )

    path = local_key_path(state_dir)
    if not os.environ.get(ENV_SIGNING_KEY, "").strip() and not path.exists():
        try:
            user = re.sub(r"[^A-Za-z0-9._-]", "-", getpass.getuser())[:32] or "user"
        except (OSError, KeyError, ImportError):
            user = "user"
        generate_key(f"dev-{user}@{local_host()}-{secrets.token_hex(3)}", path, None)
    return load_signing_key(key_file=None, state_dir=state_dir)


def run(args: argparse.Namespace) -> int:
    """``rtgov init``: 0; 2 when a file exists (without ``--force``) or the baseline folder
    would be git-ignored; 3 when ``--from`` names no run."""
    from pytest_rtgov.cli.init_gates import render
    from pytest_rtgov.cli.project import git_state
    from pytest_rtgov.store.files import atomic_write
    from pytest_rtgov.store.keys import LOCAL_PREFIX, add_to_keyring
    from pytest_rtgov.store.paths import write_state_gitignore

    where = paths(args)
    baseline = _check_targets(args, where)
    git = git_state(where.project[0])
    findings = _findings(args, where)
    text = render(findings, git, args.baseline)
    config = _validated(text, where.gates_file, where.project[0])

    where.gates_file.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(where.gates_file, text.encode("utf-8"))
    from pytest_rtgov.store.baselines import BaselineStore

    had_baseline = BaselineStore(baseline).exists()
    baseline.mkdir(parents=True, exist_ok=True)
    where.state_dir.mkdir(parents=True, exist_ok=True)
    ignore = write_state_gitignore(where.state_dir, replace=args.force)
    signing = _signing_key(where.state_dir)
    added = add_to_keyring(
        where.keyring,
        signing.verifier,
        comment=f"{signing.verifier.name}: signs the sessions of the machine that ran "
        "`rtgov init`; CI signs with a key of its own (docs/ci.md)",
    )

    names = ", ".join(g.name for g in config.gates) or "none yet: see the examples in it"
    state = _relative(where.state_dir)
    files = [_relative(where.gates_file), _relative(where.keyring), _relative(baseline)]
    print(f"rtgov init: {files[0]}: {len(config.gates)} gate(s) ({names}), from {findings.source}")
    print(
        f"rtgov init: {files[2]}/: the baseline folder; "
        + ("it holds a baseline already" if had_baseline else "the first gated run fills it")
    )
    print(
        f"rtgov init: {state}/.gitignore: "
        + ("written: " if ignore else "kept: ")
        + "the state directory (runs, ledger, private keys) stays out of git"
    )
    print(
        f"rtgov init: {files[1]}: "
        + ("trusts " if added else "already trusts ")
        + f"{signing.verifier.name}, the key that signs the baseline ({signing.source})"
    )
    if args.from_run is None and (where.state_dir / "latest").is_file():
        print(
            "rtgov init: note: a run is recorded here; `rtgov init --force --from latest` "
            "gates what it measured, with a CPU-time budget"
        )
    if signing.local and signing.verifier.name.startswith(LOCAL_PREFIX):
        print(
            f"rtgov init: note: this state directory's local key was made before, by a "
            f"session; it keeps its name {signing.verifier.name}, and the keyring now trusts it"
        )
    if not git.has_commit:
        print(
            f"rtgov init: {git.describe}: timing is gated on CPU time against the stored "
            "baseline; A/B timing gates need a commit (see the comments in "
            f"{files[0]})"
        )
    git_add = "git add " + " ".join(files)
    print("Next:")
    print(f"  pytest --rtgov-gate      # the first run records the baseline in {files[2]}/")
    print(f"  {'' if git.top else 'git init && '}{git_add}   # commit them: CI gates against them")
    print("  rtgov verify             # the ledger, its signed checkpoints, the baseline's seal")
    return 0
