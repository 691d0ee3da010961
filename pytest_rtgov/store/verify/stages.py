"""``rtgov verify``, the stage cache: every entry's envelope, objects, key and chain.

Each entry under ``entries/<stage>/<key>.dsse.json`` is checked as a hit would be
(``store/stage_cache.py``), without the session's current inputs: the envelope signed by a
key the trust accepts (the keyring; outside CI also this machine's local key, with a
warning), its statement a stage provenance for the stage and key its file name says, the
key recomputed from the sealed inputs, and every output object hashing to its sealed
digest. Then the chain: for each upstream stage an entry names, some entry of that stage
must hold exactly those output digests (in-toto's MATCH rule). An upstream entry that is
simply gone (``rtgov stages gc``, or stored in another store) is a note; an upstream
entry under the sealed key holding *other* outputs is a broken chain. ``refused/`` holds
entries set aside as evidence: counted, never judged.

``rtgov stages list`` shows the same checks (:func:`check_store`).
"""

from __future__ import annotations

import base64
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

from pytest_rtgov.core import dsse
from pytest_rtgov.core.stages import SealedStage, parse_sealed_stage
from pytest_rtgov.errors import RtgovError
from pytest_rtgov.store.keys import Trust
from pytest_rtgov.store.stage_cache import Backend, StageCache, object_rel, open_backend
from pytest_rtgov.store.verify.failures import EXIT_SEAL, VerifyFailure, VerifyReport

__all__ = [
    "EntryCheck",
    "StoreCheck",
    "check_store",
    "read_unverified",
    "stage_store_in_use",
    "verify_stage_store",
]


@dataclass
class EntryCheck:
    """One entry as checked: what it seals (None where it cannot be read) and its problem."""

    stage: str
    key: str
    rel: str
    sealed: SealedStage | None = None
    signed_by: tuple[str, ...] = ()
    trusted: bool = False
    sizes: dict[str, int] = field(default_factory=dict)  # output -> bytes of its object
    problem: str | None = None  # None: it verifies

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


@dataclass
class StoreCheck:
    """Every entry of a store, checked, and the notes on chains that lead out of it."""

    url: str
    entries: list[EntryCheck]
    notes: list[str]
    refused: int  # entries set aside under refused/

    def bad(self) -> list[EntryCheck]:
        return [entry for entry in self.entries if entry.problem is not None]


def read_unverified(data: bytes) -> SealedStage | None:
    """What an envelope's statement says, its signatures not checked (None: unreadable).
    For ``rtgov stages gc``, which must know what every entry names before it deletes an
    object, whoever signed it."""
    try:
        envelope = json.loads(data)
        payload = base64.b64decode(envelope["payload"], validate=True)
        return parse_sealed_stage(dsse.parse_statement(payload))
    except (ValueError, KeyError, TypeError, RtgovError):
        return None


def _check_entry(
    cache: StageCache, stage: str, key: str, rel: str, objects: dict[str, tuple[int, str]]
) -> EntryCheck:
    entry = EntryCheck(stage, key, rel)
    try:
        sealed, _, entry.signed_by, entry.trusted = cache.read_entry(rel)
    except RtgovError as exc:
        entry.problem = str(exc)
        return entry
    entry.sealed = sealed
    recomputed = sealed.key_inputs().key()
    if sealed.stage != stage:
        entry.problem = f"the entry seals stage {sealed.stage!r}, its place says {stage!r}"
    elif sealed.key != key:
        entry.problem = f"the entry seals key {sealed.key[:12]}, its file name says {key[:12]}"
    elif recomputed != key:
        entry.problem = f"the sealed inputs hash to key {recomputed[:12]}, not {key[:12]}"
    for name, expected in sorted(sealed.outputs.items()):
        if expected not in objects:  # one read per object, however many entries name it
            blob = cache.backend.read(object_rel(expected))
            objects[expected] = (
                (0, "missing") if blob is None else (len(blob), hashlib.sha256(blob).hexdigest())
            )
        size, actual = objects[expected]
        entry.sizes[name] = size
        if entry.problem is not None:
            continue
        if actual == "missing":
            entry.problem = f"output {name}: object {expected[:12]} is missing"
        elif actual != expected:
            entry.problem = (
                f"output {name}: bytes hash to sha256 {actual[:12]}, the entry seals "
                f"{expected[:12]}"
            )
    return entry


def _chain(entries: list[EntryCheck]) -> list[str]:
    """Set each entry's broken chain as its problem; return the notes on missing links."""
    valid = [e for e in entries if e.problem is None and e.sealed is not None]
    by_key = {(e.stage, e.key): e for e in entries}
    held = {(e.stage, frozenset(e.sealed.outputs.items())) for e in valid if e.sealed}
    notes: list[str] = []
    for entry in valid:
        assert entry.sealed is not None
        for name, upstream in sorted(entry.sealed.upstream.items()):
            wanted = dict(upstream.outputs)
            if (name, frozenset(wanted.items())) in held:  # in-toto's MATCH: exactly these
                continue
            named = by_key.get((name, upstream.key))
            if named is not None and named.problem is None and named.sealed is not None:
                entry.problem = (
                    f"chain: built from {name} key {upstream.key[:12]} with outputs "
                    f"{_digests(wanted)}, but that entry holds {_digests(named.sealed.outputs)} "
                    "(a nondeterministic upstream, or a swapped entry)"
                )
                break
            gone = (
                "has no entry in this store: removed by `rtgov stages gc`, or stored elsewhere"
                if named is None
                else "has an entry that does not verify"
            )
            notes.append(
                f"{entry.stage} {entry.key[:12]}: its upstream {name} (key {upstream.key[:12]}, "
                f"outputs {_digests(wanted)}) {gone}"
            )
    return notes


def _digests(outputs: dict[str, str]) -> str:
    return ", ".join(f"{name}={digest[:12]}" for name, digest in sorted(outputs.items()))


def check_store(cache: StageCache) -> StoreCheck:
    """Every entry of ``cache`` checked (signature, statement, key, objects, chain)."""
    objects: dict[str, tuple[int, str]] = {}
    entries = [
        _check_entry(cache, stage, key, rel, objects) for stage, key, rel in cache.entries()
    ]
    notes = _chain(entries)
    refused = sum(1 for rel in cache.backend.list("refused") if rel.endswith(".dsse.json"))
    return StoreCheck(cache.backend.url, entries, notes, refused)


def stage_store_in_use(state_dir: Path, url: str | None) -> bool:
    """Whether ``rtgov verify`` checks a stage store: one configured, or ``stages/``."""
    return bool(url) or (state_dir / "stages").is_dir()


def verify_stage_store(
    state_dir: Path, url: str | None, trust: Trust, report: VerifyReport
) -> None:
    """Check the stage store at ``url`` (default ``<state_dir>/stages``); the first bad
    entry is a :class:`VerifyFailure` (exit 15) naming it and why."""
    backend: Backend = open_backend(url, state_dir=state_dir)
    cache = StageCache(backend, signer=None, trust=trust, lock_dir=state_dir / "stages" / "locks")
    checked = check_store(cache)
    untrusted: dict[str, int] = {}
    for entry in checked.entries:
        if entry.problem is not None:
            where = f"{backend.url.rstrip('/')}/{entry.rel}"
            raise VerifyFailure(EXIT_SEAL, where, f"stage entry: {entry.problem}")
        if not entry.trusted:
            who = ", ".join(entry.signed_by)
            untrusted[who] = untrusted.get(who, 0) + 1
    report.warnings += [
        f"{backend.url}: {count} stage entr{'y' if count == 1 else 'ies'} signed by the "
        f"untrusted local key {who}"
        for who, count in sorted(untrusted.items())
    ]
    report.stage_entries += len(checked.entries)
    report.notes += checked.notes
    if checked.refused:
        report.notes.append(
            f"{checked.refused} refused stage entr{'y' if checked.refused == 1 else 'ies'} "
            f"kept as evidence under {backend.url.rstrip('/')}/refused/ (not checked)"
        )
