"""``rtgov stages list|show NAME|recheck NAME|gc --keep N``: the ``@stage`` cache, seen and kept.

The store is ``--store URL``, else the project's ``--rtgov-stage-store`` /
``rtgov_stage_store`` (its pytest configuration, as a session there reads it), else
``stages/`` in the state directory. Entries are checked as ``rtgov verify`` checks them
(``store/verify/stages.py``), under the same trust (``--keyring``,
``--require-signature``, ``CI=true``). ``recheck`` cannot run a fixture itself: it runs
``python -m pytest`` on the test that last requested the stage, with
``--rtgov-stage-recheck NAME``, and reads the outcome from the run record it writes.

Exit codes: 0; 2 bad arguments; 3 no entry of that stage (``show``), a stage never run or
no valid entry to compare with (``recheck``); 4 an unreadable record or store; 6 a
nondeterminism finding (``recheck``); 7 an entry refused where signatures are required
(``recheck``); pytest's own status when its session wrote no record.
"""

from __future__ import annotations

import argparse
import base64
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.options import add_format, add_keyring
from pytest_rtgov.core.canonical import canonical_json
from pytest_rtgov.core.format import format_bytes
from pytest_rtgov.errors import NotFoundError, ReadError, RtgovError

__all__ = ["add_parsers", "run", "store_url"]


class RecheckError(RtgovError):
    """``rtgov stages recheck``'s pytest session did not say how the stage compared."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def add_parsers(sub: Any) -> None:
    stages = sub.add_parser("stages", help="the @stage cache: list, show, recheck, gc")
    ssub = stages.add_subparsers(dest="stages_command", required=True, metavar="ACTION")
    listing = ssub.add_parser("list", help="every entry: stage, key, outputs, signer, verifies")
    show = ssub.add_parser("show", help="one stage's entries, newest first, with provenance")
    show.add_argument("name", help="the stage's name")
    recheck = ssub.add_parser(
        "recheck", help="re-execute a cached stage (pytest) and compare its outputs"
    )
    recheck.add_argument("name", help="the stage's name")
    gc = ssub.add_parser("gc", help="keep the N newest entries per stage; remove the rest")
    gc.add_argument("--keep", type=_count, required=True, metavar="N",
                    help="entries kept per stage, newest first (besides the latest run's)")
    gc.add_argument("--dry-run", action="store_true", help="say what would go; remove nothing")
    for parser in (listing, show, recheck, gc):
        parser.add_argument("--store", default=None, metavar="URL",
                            help="the stage store: a directory or an fsspec URL (default: the "
                            "project's rtgov_stage_store, else stages/ in the state directory)")
        add_keyring(parser)
        parser.add_argument("--require-signature", action="store_true",
                            help="accept only keyring keys (implied by CI=true)")
    for parser in (listing, show):
        add_format(parser, ("text", "json"), "text", "output format")
        parser.add_argument("--json", dest="format", action="store_const", const="json",
                            help=argparse.SUPPRESS)  # a shorthand of --format json


def _count(text: str) -> int:
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"expected a whole number from 0, not {text!r}")
    return int(text)


def store_url(args: argparse.Namespace) -> str | None:
    """``--store``, else the project's ``rtgov_stage_store`` (``addopts``, ``-o``, the ini
    key relative to its file), else None (``stages/`` in the state directory)."""
    if getattr(args, "store", None):
        return str(args.store)
    from pytest_rtgov.store.pytest_config import locate

    project = locate()
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False, exit_on_error=False)
    parser.add_argument("--rtgov-stage-store", dest="value")
    parser.add_argument("-o", "--override-ini", dest="overrides", action="append")
    try:
        known, _ = parser.parse_known_args(project.addopts())
    except argparse.ArgumentError as exc:
        raise ReadError(f"addopts of {project.inifile or 'the environment'}: {exc}") from None
    if known.value:
        return str(known.value)
    overrides = dict(item.partition("=")[::2] for item in known.overrides or ())
    value = str(overrides.get("rtgov_stage_store") or project.values.get("rtgov_stage_store") or "")
    value = value.strip()
    if not value or "://" in value or Path(value).is_absolute() or project.inifile is None:
        return value or None
    return str(project.inifile.parent / value)


def _open(args: argparse.Namespace) -> Any:
    from pytest_rtgov.cli.options import paths
    from pytest_rtgov.store.keys import require_signatures
    from pytest_rtgov.store.stage_cache import StageCache, open_backend

    trust = paths(args).trust(required=require_signatures(args.require_signature))
    backend = open_backend(store_url(args), state_dir=args.dir)
    return StageCache(backend, signer=None, trust=trust, lock_dir=args.dir / "stages" / "locks")


def run(args: argparse.Namespace) -> int:
    commands = {"list": _list, "show": _show, "recheck": _recheck, "gc": _gc}
    return commands[args.stages_command](args)


def _row(entry: Any, trust: Any) -> dict[str, Any]:
    sealed = entry.sealed
    return {
        "stage": entry.stage,
        "key": entry.key,
        "created": sealed.finished_on if sealed is not None else None,
        "outputs": {
            name: {"sha256": digest, "bytes": entry.sizes.get(name, 0)}
            for name, digest in sorted((sealed.outputs if sealed is not None else {}).items())
        },
        "bytes": entry.total_bytes,
        "signed_by": [{"name": n, "trusted": trust.is_trusted(n)} for n in entry.signed_by],
        "verifies": entry.problem is None,
        "problem": entry.problem,
    }


def _names(names: list[str], width: int = 32) -> str:
    """``a,b,c``, or ``a,b,... (11)`` where that is wider than ``width``."""
    text = ",".join(names)
    if len(text) <= width:
        return text or "-"
    shown = text[: width - 10].rsplit(",", 1)[0]
    return f"{shown},... ({len(names)})"


def _print_json(value: Any) -> None:
    sys.stdout.write(canonical_json(value).decode("utf-8") + "\n")


def _list(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.verify.stages import check_store

    cache = _open(args)
    checked = check_store(cache)
    rows = [_row(entry, cache.trust) for entry in checked.entries]
    if args.format == "json":
        _print_json({"store": checked.url, "entries": rows, "notes": checked.notes,
                     "refused": checked.refused})  # fmt: skip
        return 0
    table = [("STAGE", "KEY", "CREATED", "OUTPUTS", "BYTES", "SIGNER", "VERIFIES")]
    for row, entry in zip(rows, checked.entries, strict=True):
        signer = ", ".join(cache.trust.describe(n) for n in entry.signed_by) or "-"
        table.append((row["stage"], row["key"][:12], row["created"] or "-",
                      _names(list(row["outputs"])), format_bytes(row["bytes"]), signer,
                      "yes" if row["verifies"] else f"NO: {row['problem']}"))  # fmt: skip
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        cells = [cell.ljust(width) for cell, width in zip(line[:-1], widths, strict=True)]
        print("  ".join([*cells, line[-1]]))
    bad = len(checked.bad())
    print(f"{len(rows)} entr{'y' if len(rows) == 1 else 'ies'} in {checked.url}, "
          f"{len(rows) - bad} verif{'ies' if len(rows) - bad == 1 else 'y'}"
          + (f", {bad} do{'es' if bad == 1 else ''} not (rtgov verify: exit 15)" if bad else "")
          + (f"; {checked.refused} refused kept under refused/" if checked.refused else ""))
    for note in checked.notes:
        print(f"note: {note}")
    return 0


def _show(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.verify.stages import check_store

    cache = _open(args)
    checked = check_store(cache)
    mine = [e for e in checked.entries if e.stage == args.name]
    if not mine:
        known = sorted({e.stage for e in checked.entries})
        raise NotFoundError(f"no entry of stage {args.name!r} in {checked.url} (stages there: "
                            f"{', '.join(known) or 'none'})")  # fmt: skip
    mine.sort(key=lambda e: (e.sealed.finished_on if e.sealed else "", e.key), reverse=True)
    rows = []
    for entry in mine:
        row = _row(entry, cache.trust)
        sealed = entry.sealed
        if sealed is not None:
            row.update(params=sealed.params, seeds=sealed.seeds, environment=sealed.environment,
                       device=sealed.device, code=sealed.code, metadata=sealed.metadata,
                       metrics=list(sealed.metrics), invocation=sealed.invocation,
                       upstream=[u.to_dict() for u in sealed.upstream.values()])  # fmt: skip
        rows.append(row)
    if args.format == "json":
        _print_json({"store": checked.url, "stage": args.name, "entries": rows})
        return 0
    for row, entry in zip(rows, mine, strict=True):
        print(f"{row['stage']} {row['key']}")
        print(f"  created      {row['created'] or '-'}  ({row.get('invocation', '-')})")
        signer = ", ".join(cache.trust.describe(n) for n in entry.signed_by) or "-"
        print(f"  signed by    {signer}")
        print(f"  verifies     {'yes' if row['verifies'] else 'NO: ' + str(row['problem'])}")
        pad = max((len(name) for name in row["outputs"]), default=0)
        for name, out in row["outputs"].items():
            print(f"  output       {name:<{pad}}  sha256:{out['sha256']}  "
                  f"{format_bytes(out['bytes'])}")  # fmt: skip
        if "params" not in row:
            continue
        for what in ("params", "seeds", "metadata"):
            print(f"  {what:<12} {canonical_json(row[what]).decode()}")
        print(f"  environment  {canonical_json(row['environment']).decode()}"
              f"  device {row['device']}")  # fmt: skip
        for name, digest in sorted(row["code"].items()):
            print(f"  code         {name}  sha256:{digest[:12]}")
        for upstream in row["upstream"]:
            outputs = ", ".join(f"{k}=sha256:{v[:12]}" for k, v in upstream["outputs"].items())
            print(f"  upstream     {upstream['stage']} key {upstream['key'][:12]}: {outputs}")
        for metric in row["metrics"]:
            unit = f" {metric['unit']}" if metric.get("unit") else ""
            print(f"  metric       {metric.get('name')} = {metric.get('value')}{unit}")
    return 0


def _stage_events(record: Any, name: str) -> list[tuple[str, dict[str, Any]]]:
    """``(requested_by, event)`` of every setup of stage ``name`` in a run record."""
    return [
        (setup.requested_by, dict(setup.stage))
        for fixture in record.fixtures
        for setup in fixture.setups
        if setup.stage and setup.stage.get("stage") == name
    ]


def _recheck(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.pytest_config import locate
    from pytest_rtgov.store.runs import RunStore

    store = RunStore(args.dir)
    before = set(store.run_ids())
    found = None
    for run_id in sorted(before, reverse=True):
        try:
            events = _stage_events(store.read(run_id), args.name)
        except RtgovError as exc:
            print(f"rtgov stages: warning: skipped {exc}", file=sys.stderr)
            continue
        if events:
            found = run_id, events[0][0]
            break
    if found is None:
        raise NotFoundError(f"stage {args.name!r} was never run: no run record under "
                            f"{store.runs_dir} has a setup of it; run the tests first")  # fmt: skip
    run_id, test = found
    command = [sys.executable, "-m", "pytest", *([test] if test else []), "--rtgov",
               "--rtgov-dir", str(args.dir.absolute()), "--rtgov-stage-recheck", args.name,
               "-p", "no:cacheprovider"]  # fmt: skip
    if args.store:  # a local path as seen from here; the session runs in the rootdir
        url = args.store if "://" in args.store else str(Path(args.store).absolute())
        command += ["--rtgov-stage-store", url]
    if args.require_signature:
        command += ["--rtgov-require-signature"]
    root = locate().rootdir
    print(f"rtgov stages recheck: {args.name}, as run {run_id} requested it by "
          f"{test or 'the whole suite'}: {' '.join(command[1:])} (in {root})", flush=True)
    done = subprocess.run(command, cwd=root, capture_output=True, text=True, check=False)
    new = sorted(set(store.run_ids()) - before)
    events = _stage_events(store.read(new[-1]), args.name) if new else []
    if not events:
        sys.stderr.write(done.stdout[-4000:] + done.stderr[-2000:])
        raise RecheckError(f"pytest exited {done.returncode} and recorded no setup of stage "
                           f"{args.name!r} (its output is above)",
                           done.returncode if done.returncode in range(2, 17) else 4)  # fmt: skip
    event = events[0][1]
    key = str(event.get("key", ""))[:12]
    outcome = event.get("outcome")
    tail = "" if done.returncode in (0, 6) else f" (pytest exited {done.returncode})"
    if outcome == "recheck" and event.get("finding"):
        print(f"rtgov stages recheck: {event['finding']}; run {new[-1]}{tail}")
        return 6
    if outcome == "recheck":
        print(f"rtgov stages recheck: {args.name} under key {key}: re-executed, outputs "
              f"identical to the entry; run {new[-1]}{tail}")  # fmt: skip
        return 0
    why = f"outcome {outcome}" + (f": {event['reason']}" if event.get("reason") else "")
    if event.get("fatal"):
        raise RecheckError(f"stage {args.name} under key {key}: the entry was refused where "
                           f"signatures are required ({why}); run {new[-1]}", 7)  # fmt: skip
    raise NotFoundError(f"stage {args.name} under key {key}: no valid entry to compare with "
                        f"({why}); the stage was executed; run {new[-1]}{tail}")  # fmt: skip


def _size(backend: Any, rel: str) -> int:
    try:
        if hasattr(backend, "fs"):
            return int(backend.fs.size(f"{backend.root}/{rel}"))
        return int(Path(backend.root, rel).stat().st_size)
    except (OSError, ValueError, TypeError):
        return 0


_HEX64 = re.compile(rb"(?<![0-9a-f])[0-9a-f]{64}(?![0-9a-f])")


def _named_loosely(data: bytes) -> set[str] | None:
    """Every 64-hex digest anywhere in an entry this rtgov cannot parse (its envelope and
    its decoded DSSE payload), so gc keeps the objects it may name; None where ``data``
    is not even an envelope with a base64 payload."""
    try:
        payload = base64.b64decode(json.loads(data)["payload"], validate=True)
    except (ValueError, KeyError, TypeError):
        return None
    return {match.decode() for match in _HEX64.findall(data + b"\n" + payload)}


def _gc(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.runs import RunStore
    from pytest_rtgov.store.verify.stages import read_unverified

    cache = _open(args)
    backend = cache.backend
    used: set[tuple[str, str]] = set()
    store = RunStore(args.dir)
    latest = store.resolve("latest") if store.run_ids() else None
    if latest is not None:
        for fixture in store.read(latest).fixtures:
            used |= {(str(s.stage.get("stage")), str(s.stage.get("key")))
                     for s in fixture.setups if s.stage}  # fmt: skip
    by_stage: dict[str, list[tuple[str, str, str, Any]]] = {}
    unreadable: list[str] = []
    named: set[str] = set()
    opaque = False
    for stage, key, rel in cache.entries():
        data = backend.read(rel) or b""
        sealed = read_unverified(data)
        if sealed is None:  # a newer rtgov's, or damaged: the objects it names stay
            unreadable.append(rel)
            loose = _named_loosely(data)
            opaque = opaque or loose is None
            named |= loose or set()
            continue
        by_stage.setdefault(stage, []).append((sealed.finished_on, key, rel, sealed))
    for rel in backend.list("refused"):  # evidence: what a refused entry names stays too
        data = backend.read(rel) or b""
        sealed = read_unverified(data)
        named |= set(sealed.outputs.values()) if sealed else _named_loosely(data) or set()
    removed, kept = [], 0
    for stage, found in sorted(by_stage.items()):
        found.sort(reverse=True)
        for rank, (created, key, rel, sealed) in enumerate(found):
            if rank < args.keep or (stage, key) in used:
                kept += 1
                named |= set(sealed.outputs.values())
            else:
                removed.append((stage, key, rel, created))
    objects = [] if opaque else [rel for rel in backend.list("objects")
               if rel.endswith(".npy") and rel.rsplit("/", 1)[-1][:-4] not in named]  # fmt: skip
    freed = sum(_size(backend, rel) for rel in objects)
    verb = "would remove" if args.dry_run else "removed"
    for stage, key, rel, created in removed:
        print(f"{verb} entry {stage} {key[:12]} ({created or '-'})")
        if not args.dry_run:
            backend.delete(rel)
    for rel in objects:
        print(f"{verb} object {rel.rsplit('/', 1)[-1][:16]}")
        if not args.dry_run:
            backend.delete(rel)
    for rel in unreadable:
        print(f"left alone {rel}: not a readable stage entry (rtgov verify says why); "
              "the objects it names are kept")  # fmt: skip
    if opaque:
        print("no object removed: an entry above is not even a DSSE envelope, so what it "
              "names is unknown; remove it (or restore it) and run gc again")  # fmt: skip
    print(f"rtgov stages gc{' --dry-run' if args.dry_run else ''}: {verb} {len(removed)} "
          f"entr{'y' if len(removed) == 1 else 'ies'} and {len(objects)} object(s), "
          f"{format_bytes(freed)}; kept {kept} (keep {args.keep} per stage, and the "
          f"{len(used)} the latest run {latest or '-'} used); refused/ untouched; the "
          "ledger keeps every stage leaf" + ("; nothing removed" if args.dry_run else ""))
    return 0
