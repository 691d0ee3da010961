"""Pruning old runs (``rtgov gc``): which runs go and which stay, the signed ``prune``
leaf that states the intent, then the deletes.

A run's files are its record ``runs/<id>.json``, its memray captures ``captures/<id>/``
and its sealed artifacts ``artifacts/<id>/``; its ledger leaves always stay. Only runs
the ledger covers are pruned (a verdict leaf pins the record's digest), never the latest
run nor one a baseline file names as the run it was refreshed from. The plan is made
again under the ledger's lock, the ``prune`` leaf is appended and signed with a
checkpoint, and only then are files deleted: a gc killed in between leaves a signed
intent, which ``rtgov verify`` accepts (warning about the files left) and the next gc
completes.
"""

from __future__ import annotations

import calendar
import shutil
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from pytest_rtgov.core.keys import Signer
from pytest_rtgov.core.ledger_records import prune_leaf
from pytest_rtgov.errors import IntegrityError, RecordNotFoundError, RtgovError
from pytest_rtgov.store.coverage import signed_leaves
from pytest_rtgov.store.files import read_json
from pytest_rtgov.store.ledger import AppendResult, Ledger, LedgerError, append_session
from pytest_rtgov.store.runs import COVERED, EDITED, RunStore

__all__ = [
    "PRUNE_PREFIX",
    "RUN_DIRS",
    "GcResult",
    "Plan",
    "Policy",
    "PruneMark",
    "PruneNotLoggedError",
    "collect",
    "plan_prune",
    "pruned_message",
    "pruned_runs",
    "resolve_pruned",
]

RUN_DIRS = ("artifacts", "captures")  # <state>/<dir>/<run id>/: a run's other files
# Canonical JSON sorts keys: a prune leaf, and only it, starts with this.
PRUNE_PREFIX = b'{"kind":"prune",'


class PruneNotLoggedError(IntegrityError):
    """The prune leaf could not be appended and signed: nothing was deleted."""


@dataclass(frozen=True, slots=True)
class PruneMark:
    """Where the ledger says a run was pruned: the prune leaf, its time, the digest."""

    leaf: int
    at: str
    record_sha256: str


def pruned_runs(state_dir: Path) -> dict[str, PruneMark]:
    """``{run_id: PruneMark}`` of the prune leaves the latest checkpoint covers (one
    streaming pass; every frame is checked). A frame that does not check, or a prune
    leaf that does not parse, raises :class:`~pytest_rtgov.store.ledger.LedgerError`."""
    marks: dict[str, PruneMark] = {}
    for index, _, leaf in signed_leaves(state_dir, PRUNE_PREFIX):
        for run in leaf["runs"]:
            marks[run["run_id"]] = PruneMark(index, leaf["pruned_at"], run["record_sha256"])
    return marks


def pruned_message(state_dir: Path, ref: str) -> str | None:
    """What to say of ``ref`` (a run id or a prefix) when no record file matches it but
    ``rtgov gc`` pruned such a run; None when it did not (or the ledger cannot tell)."""
    try:
        marks = pruned_runs(state_dir)
    except (LedgerError, OSError):
        return None
    hits = sorted(run_id for run_id in marks if run_id.startswith(ref))
    if not hits:
        return None
    mark = marks[hits[-1]]
    which = f"run {hits[0]} was" if len(hits) == 1 else f"{len(hits)} runs matching {ref!r} were"
    return (
        f"{which} pruned by `rtgov gc` at {mark.at} (ledger leaf {mark.leaf}): the record, "
        f"captures and artifacts are gone; the leaves stay in {state_dir / 'ledger' / 'log'} "
        "(`rtgov compare`, `rtgov graph` and `rtgov prove` still read them)"
    )


def resolve_pruned(state_dir: Path, ref: str) -> str | None:
    """The one pruned run ``ref`` (a run id or a prefix) names, else None: for the
    commands that read a run's leaves, which the ledger keeps."""
    try:
        hits = [run_id for run_id in pruned_runs(state_dir) if run_id.startswith(ref)]
    except (LedgerError, OSError):
        return None
    return hits[0] if len(hits) == 1 and ref else None


@dataclass(frozen=True, slots=True)
class Policy:
    """``--keep N`` (the N runs the ledger recorded last stay) or ``--older-than DAYS``
    (runs that started more than DAYS days before ``now`` go); exactly one is set."""

    keep: int | None = None
    older_than_days: float | None = None

    def describe(self) -> str:
        if self.keep is not None:
            return f"keep {self.keep}"
        return f"older than {self.older_than_days:g} days"


@dataclass
class Plan:
    """What a gc does. Run ids map to: the digest to prune (``prune``), why a run stays
    (``kept``), why a record is left alone (``untouched``: not covered, or edited), the
    digest of an earlier prune whose files remain (``pending``); and bytes per run."""

    prune: dict[str, str] = field(default_factory=dict)
    kept: dict[str, str] = field(default_factory=dict)
    untouched: dict[str, str] = field(default_factory=dict)
    pending: dict[str, str] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)

    def bytes_to_free(self) -> int:
        return sum(self.sizes.get(r, 0) for r in (*self.prune, *self.pending))


def _started(run_id: str) -> float:
    """Epoch seconds of the run id's start stamp (``YYYYMMDDTHHMMSSZ-xxxxxx``)."""
    return float(calendar.timegm(time.strptime(run_id[:16], "%Y%m%dT%H%M%SZ")))


def _run_paths(state_dir: Path, run_id: str) -> list[Path]:
    """The run's files that exist: its directories, then its record."""
    paths = [state_dir / name / run_id for name in RUN_DIRS]
    paths.append(state_dir / "runs" / f"{run_id}.json")
    return [p for p in paths if p.exists()]


def _size(path: Path) -> int:
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _protected(
    store: RunStore, covered: Mapping[str, str], baseline_dirs: Iterable[Path]
) -> dict[str, str]:
    """Runs never pruned, and why: ``latest`` (the ledger's and the pointer's) and the
    runs baseline files were refreshed from (a baseline file that cannot be read stops
    the gc: exit 4, rather than guess what it needs)."""
    keep: dict[str, str] = {}
    for directory in baseline_dirs:
        for path in sorted(directory.glob("*.json")) if directory.is_dir() else []:
            doc = read_json(path)
            run_id = doc.get("run_id") if isinstance(doc, dict) else None
            if isinstance(run_id, str) and run_id:
                keep.setdefault(run_id, f"the baseline {path} was refreshed from it")
    pointer = store.latest_pointer()
    if pointer is not None:
        keep[pointer] = f"latest ({store.state_dir / 'latest'} names it)"
    try:
        keep[store.resolve("latest", covered)] = "latest (the ledger's last run)"
    except RecordNotFoundError:
        pass
    return keep


def plan_prune(
    state_dir: Path, policy: Policy, *, baseline_dirs: Iterable[Path], now: float
) -> Plan:
    """Which covered runs ``policy`` prunes, which stay and why, and which earlier
    prunes left files behind. Reads; changes nothing."""
    store = RunStore(state_dir)
    covered = store.covered()  # a ledger whose frames do not check: RecordFormatError
    marks = pruned_runs(state_dir)
    plan = Plan()
    for run_id, mark in marks.items():
        if _run_paths(state_dir, run_id):
            plan.pending[run_id] = mark.record_sha256
    protected = _protected(store, covered, baseline_dirs)
    on_disk = {r for r in store.run_ids() if r not in marks}
    runs = [r for r in covered if r in on_disk]  # in ledger order: oldest first
    for run_id in sorted(on_disk - set(runs)):
        plan.untouched[run_id] = "no verdict leaf covers it (`rtgov ledger recover` moves it aside)"
    newest = set(runs[max(0, len(runs) - policy.keep) :]) if policy.keep else set()
    for run_id in runs:
        if run_id in protected:
            plan.kept[run_id] = protected[run_id]
        elif policy.keep is not None and run_id in newest:
            plan.kept[run_id] = f"one of the {policy.keep} newest"
        elif policy.older_than_days is not None and (
            now - _started(run_id) < policy.older_than_days * 86400
        ):
            plan.kept[run_id] = f"started less than {policy.older_than_days:g} days ago"
        elif store.standing(run_id, covered) == EDITED:
            plan.untouched[run_id] = "edited: differs from its verdict leaf (`rtgov verify`)"
        else:
            plan.prune[run_id] = covered[run_id]
    for run_id in (*plan.prune, *plan.pending):
        plan.sizes[run_id] = sum(_size(p) for p in _run_paths(state_dir, run_id))
    return plan


@dataclass
class GcResult:
    """What :func:`collect` did: the plan it carried out, the leaf and checkpoint that
    record it (None when nothing new was pruned), and the bytes it freed."""

    plan: Plan
    append: AppendResult | None = None
    freed: int = 0
    left: list[str] = field(default_factory=list)  # records kept: not the pruned bytes


def collect(
    state_dir: Path,
    policy: Policy,
    *,
    baseline_dirs: Iterable[Path],
    signer: Callable[[], Signer],
    sign_uncovered: bool,
    who: str,
    now: float | None = None,
    on_wait: Callable[[str], None] | None = None,
) -> GcResult:
    """Prune: plan under the ledger's lock, append and sign the prune leaf, then delete
    the files of the runs it names and of earlier prunes an interrupted gc left.

    Nothing is appended (and the ledger is not locked) when nothing new is to be pruned.
    A ledger that refuses the leaf is a :class:`PruneNotLoggedError`, nothing deleted;
    what ``signer`` raises propagates as it is."""
    now = time.time() if now is None else now
    dirs = list(baseline_dirs)
    result = GcResult(plan_prune(state_dir, policy, baseline_dirs=dirs, now=now))
    if result.plan.prune:
        at = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now))

        def leaves() -> list[bytes]:
            # Again under the lock: another gc or a session may have come first.
            result.plan = plan_prune(state_dir, policy, baseline_dirs=dirs, now=now)
            if not result.plan.prune:
                return []
            return [prune_leaf(result.plan.prune, pruned_at=at, policy=policy.describe(), who=who)]

        key = signer()
        try:
            result.append = append_session(
                Ledger(state_dir / "ledger"),
                leaves,
                signer=key,
                origin="",  # the ledger exists: it keeps its own origin
                created_at=at,
                on_wait=on_wait,
                sign_uncovered=sign_uncovered,
            )
        except (RtgovError, OSError) as exc:
            raise PruneNotLoggedError(
                f"nothing pruned: the prune leaf was not logged in the ledger: {exc}"
            ) from exc
    for run_id, digest in (*result.plan.pending.items(), *result.plan.prune.items()):
        result.freed += _remove(state_dir, run_id, digest, result.left)
    return result


def _remove(state_dir: Path, run_id: str, digest: str, left: list[str]) -> int:
    """Delete a pruned run's directories, then its record if it is the one the prune
    leaf names (another file under that name is left, and named in ``left``)."""
    freed = 0
    for path in _run_paths(state_dir, run_id):
        if path.is_dir():
            freed += _size(path)
            shutil.rmtree(path)
        elif RunStore(state_dir).standing(run_id, {run_id: digest}) == COVERED:
            freed += path.stat().st_size
            path.unlink()
        else:
            left.append(str(path))
    return freed
