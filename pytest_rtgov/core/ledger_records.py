"""What goes into the ledger: one canonical-JSON leaf per fact, in canonical order.

A session contributes, in this order: its run header (id, times, arguments,
environment: the provenance), one leaf per test (node id order) and per fixture
(name order), one per ``@stage`` fixture setup (its key, outcome and output digests, in
fixture order), one per gate result (subject, metric order), and a closing ``verdict``
leaf carrying the sha256 of the canonical run record, which ties the record file
to the log. The order comes from the record, which is canonical whatever xdist did.
``rtgov gc`` appends a ``prune`` leaf naming the runs whose files it removes next;
``rtgov replay`` a ``replay`` leaf with its verdict on a recorded run. A session run
under ``--rtgov-schedule`` adds, after its fixtures' and stages' leaves, a ``schedule``
leaf and one ``execution`` leaf per worker (:func:`schedule_leaves`, from the record's
``schedule``).

>>> leaf = genesis_leaf("rtgov.local/demo", created_at="2026-11-22T00:00:00Z")
>>> leaf
b'{"created_at":"2026-11-22T00:00:00Z","format":1,"kind":"ledger","origin":"rtgov.local/demo"}'
>>> parse_leaf(leaf)["kind"]
'ledger'
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from typing import Any

from pytest_rtgov.core.canonical import PRESORTED_ENCODER, canonical_json
from pytest_rtgov.core.records import RunRecord
from pytest_rtgov.errors import ReadError

__all__ = [
    "LEAF_FIELDS",
    "LEAF_KINDS",
    "LeafFormatError",
    "baseline_refresh_leaf",
    "genesis_leaf",
    "parse_leaf",
    "prune_leaf",
    "record_digest",
    "recovery_leaf",
    "replay_leaf",
    "run_leaves",
    "schedule_leaves",
]

FORMAT = 1
LEAF_KINDS = (
    "ledger",
    "run",
    "test",
    "fixture",
    "gate",
    "verdict",
    "baseline_refresh",
    "quarantine",
    "recovery",
    "prune",
    "stage",
    "replay",
    "schedule",
    "execution",
)


class LeafFormatError(ReadError):
    """A leaf is not a canonical JSON object with a known ``kind``."""


def record_digest(record: RunRecord, *, encoded: bytes | None = None) -> str:
    """``sha256:<hex>`` of the run record's canonical JSON (``encoded``, when the
    caller already has those bytes)."""
    if encoded is None:
        encoded = record.canonical_json()
    return "sha256:" + hashlib.sha256(encoded).hexdigest()


def genesis_leaf(origin: str, *, created_at: str) -> bytes:
    """Leaf 0 of every ledger: names the log (the checkpoints' origin line)."""
    return canonical_json(
        {"kind": "ledger", "format": FORMAT, "origin": origin, "created_at": created_at}
    )


def _test_leaf(test: dict[str, Any], run_id: str) -> bytes:
    """``canonical_json({"kind": "test", "run_id": run_id, **test})``, the same bytes,
    ~2x faster: ``TestEntry.to_dict`` (and the dicts in it) come with sorted keys, so
    the two keys are put in their sorted places and the encoder need not sort."""
    leaf: dict[str, Any] = {}
    for key, value in test.items():
        if key > "kind" and "kind" not in leaf:  # "checkpoints" sorts before "kind"
            leaf["kind"] = "test"
        if key > "run_id" and "run_id" not in leaf:
            leaf["run_id"] = run_id
        leaf[key] = value
    leaf.setdefault("kind", "test")
    leaf.setdefault("run_id", run_id)
    return PRESORTED_ENCODER.encode(leaf).encode("utf-8")


def run_leaves(record: RunRecord, *, encoded: bytes | None = None) -> list[bytes]:
    """Every leaf a finished session appends, in canonical order (``encoded``: the
    record's canonical JSON, when the caller already has it)."""
    data = record.to_dict()
    run_id = record.run_id
    header = {
        key: value
        for key, value in data.items()
        if key not in ("tests", "fixtures", "gate_results", "verdict", "exit_status")
    }
    leaves = [canonical_json({"kind": "run", **header})]
    leaves += [_test_leaf(t, run_id) for t in data["tests"]]
    leaves += [canonical_json({"kind": "fixture", "run_id": run_id, **f}) for f in data["fixtures"]]
    leaves += [
        canonical_json(
            {"kind": "stage", "run_id": run_id, "nodeid": f["nodeid"], "worker": s["worker"],
             **s["stage"]}
        )
        for f in data["fixtures"]
        for s in f["setups"]
        if "stage" in s
    ]
    leaves += schedule_leaves(run_id, record.schedule)
    leaves += [
        canonical_json({"kind": "gate", "run_id": run_id, **g}) for g in data["gate_results"]
    ]
    leaves.append(
        canonical_json(
            {
                "kind": "verdict",
                "run_id": run_id,
                "exit_status": record.exit_status,
                "verdict": data["verdict"],
                "record_sha256": record_digest(record, encoded=encoded),
            }
        )
    )
    return leaves


def schedule_leaves(run_id: str, schedule: Mapping[str, Any]) -> list[bytes]:
    """A scheduled run's ``schedule`` leaf (seed, policy, workers, the plan's and the cost
    model's digests, re-plans) and one ``execution`` leaf per worker that ran tests, with
    its observed sequence; none for a run without a schedule."""
    if not schedule:
        return []
    observed = schedule.get("observed", {})
    head = {key: value for key, value in schedule.items() if key != "observed"}
    return [canonical_json({"kind": "schedule", "run_id": run_id, **head})] + [
        canonical_json({"kind": "execution", "run_id": run_id, "worker": worker,
                        "sequence": list(sequence)})
        for worker, sequence in sorted(observed.items())
    ]  # fmt: skip


def baseline_refresh_leaf(entry: Mapping[str, Any], *, seal_sha256: str) -> bytes:
    """An audited baseline change, with the digest of the envelope that signs the result."""
    return canonical_json({"kind": "baseline_refresh", **entry, "seal_sha256": seal_sha256})


def replay_leaf(result: Mapping[str, Any]) -> bytes:
    """``rtgov replay``'s verdict on a recorded run (``run_id``): its ``replay_id``, ``at``,
    ``outcome``, first divergence, counts, drift, the code and the policy digest."""
    return canonical_json({"kind": "replay", **result})


def recovery_leaf(
    *,
    uncovered: tuple[int, int] | None,
    set_aside: str | None,
    torn_bytes: int,
    at: str,
    invalid: Mapping[str, Any] | None = None,
) -> bytes:
    """A writer's acknowledgement of an interrupted append: leaves ``[a, b)`` that no
    checkpoint signed, and torn bytes it moved to ``set_aside``. ``invalid`` (only
    when there were some): the unsigned frames from the first one that was no valid
    leaf on, which it moved aside instead of signing (``leaf``, ``offset``, ``bytes``,
    ``set_aside``, ``reason``)."""
    leaf: dict[str, Any] = {
        "kind": "recovery",
        "uncovered": list(uncovered) if uncovered else None,
        "set_aside": set_aside,
        "torn_bytes": torn_bytes,
        "at": at,
    }
    if invalid is not None:
        leaf["invalid"] = dict(invalid)
    return canonical_json(leaf)


def prune_leaf(
    runs: Mapping[str, str], *, pruned_at: str, policy: str, who: str
) -> bytes:
    """``rtgov gc``'s intent, appended and signed before it deletes anything: the runs
    (``{run_id: record_sha256}``, the digests their verdict leaves hold) whose record,
    captures and artifacts it removes. Their own leaves stay in the log.

    >>> prune_leaf({"r1": "sha256:" + "0" * 64}, pruned_at="t", policy="keep 1", who="w")[:25]
    b'{"kind":"prune","policy":'
    """
    return canonical_json(
        {
            "kind": "prune",
            "policy": policy,
            "pruned_at": pruned_at,
            "runs": [{"run_id": r, "record_sha256": d} for r, d in sorted(runs.items())],
            "who": who,
        }
    )


_STR, _INT = (str,), (int,)
# What every kind must carry, beyond its ``kind``: field -> the exact types allowed
# (exact: a bool is no int). Readers may rely on these; other fields are optional.
LEAF_FIELDS: dict[str, tuple[tuple[str, tuple[type, ...]], ...]] = {
    "ledger": (("format", _INT), ("origin", _STR), ("created_at", _STR)),
    "run": (("run_id", _STR),),
    "test": (("run_id", _STR), ("nodeid", _STR)),
    "fixture": (("run_id", _STR), ("name", _STR)),
    "gate": (("run_id", _STR),),
    "verdict": (("run_id", _STR), ("exit_status", _INT), ("record_sha256", _STR)),
    "baseline_refresh": (("seal_sha256", _STR),),
    "quarantine": (("action", _STR), ("subject", _STR), ("entry", _STR)),
    "recovery": (("at", _STR), ("torn_bytes", _INT), ("uncovered", (list, type(None)))),
    "prune": (("pruned_at", _STR), ("runs", (list,))),
    "stage": (("run_id", _STR), ("stage", _STR), ("key", _STR), ("outcome", _STR)),
    "replay": (("run_id", _STR), ("replay_id", _STR), ("outcome", _STR), ("at", _STR)),
    "schedule": (("run_id", _STR), ("seed", _INT), ("policy", _STR), ("workers", (list,)),
                 ("plan", _STR), ("cost_model", _STR)),
    "execution": (("run_id", _STR), ("worker", _STR), ("sequence", (list,))),
}  # fmt: skip
assert tuple(LEAF_FIELDS) == LEAF_KINDS
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _codec() -> tuple[Any, Any]:
    """(scan, encode): json's C scanner and encoder with canonical_json's settings, made
    once and called directly. parse_leaf runs for every leaf ``rtgov verify`` reads,
    and json.loads and json.dumps add ~5 us a leaf of Python around the C code.
    Falls back to the pure-Python API where the C accelerator is missing."""
    from json import decoder, encoder, scanner

    def py_scan(text: str, index: int) -> tuple[Any, int]:
        return decoder.JSONDecoder().raw_decode(text, index)

    def py_encode(value: Any) -> str:
        return canonical_json(value).decode("utf-8")

    # The C accelerators are not in typeshed: looked up by name.
    make_scanner = getattr(scanner, "c_make_scanner", None)
    make_encoder = getattr(encoder, "c_make_encoder", None)
    encode_string = getattr(encoder, "c_encode_basestring", None)
    if make_scanner is None or make_encoder is None or encode_string is None:
        return py_scan, py_encode
    # markers, default, encoder, indent, key_separator, item_separator, sort_keys,
    # skipkeys, allow_nan: no circular check (decoded JSON has no cycles)
    c_encode = make_encoder(None, None, encode_string, None, ":", ",", True, False, False)

    def encode(value: Any) -> str:
        return "".join(c_encode(value, 0))

    probe = {"b": [1.5, "é", None, True], "a": {"y": 1e300, "x": -0.0}}
    if encode(probe) != py_encode(probe):  # another Python's C signature: stay correct
        return py_scan, py_encode
    return make_scanner(decoder.JSONDecoder()), encode


_SCAN, _ENCODE = _codec()


def parse_leaf(payload: bytes) -> dict[str, Any]:
    """Decode a leaf, insisting on canonical bytes (re-encoding must give them back), a
    known ``kind`` and the fields of that kind (``LEAF_FIELDS``), so that readers can
    index them. Raises :class:`LeafFormatError` saying what is wrong."""
    try:
        text = payload.decode("utf-8")
        value, end = _SCAN(text, 0)
    except (UnicodeDecodeError, ValueError) as exc:
        raise LeafFormatError(f"not UTF-8 JSON ({exc})") from exc
    except StopIteration:  # the C scanner's "no JSON value here"
        raise LeafFormatError("not UTF-8 JSON (no value at byte 0)") from None
    fields = LEAF_FIELDS.get(value.get("kind")) if type(value) is dict else None  # type: ignore[arg-type]
    if fields is None:
        raise LeafFormatError(f"expected an object whose kind is one of {', '.join(LEAF_KINDS)}")
    try:
        canonical = end == len(text) and _ENCODE(value) == text
    except ValueError:  # NaN or infinity: json.loads reads them, JSON has none
        canonical = False
    if not canonical:
        raise LeafFormatError("not canonical JSON (keys sorted, compact, UTF-8, finite numbers)")
    for name, types in fields:
        if type(value.get(name)) not in types:
            names = " or ".join("null" if t is type(None) else t.__name__ for t in types)
            raise LeafFormatError(f"a {value['kind']} leaf needs {name!r} ({names})")
    if fields is LEAF_FIELDS["verdict"] and not _DIGEST.fullmatch(value["record_sha256"]):
        raise LeafFormatError("a verdict leaf needs 'record_sha256' as sha256:<64 hex digits>")
    if fields is LEAF_FIELDS["prune"]:
        for run in value["runs"]:
            if not (
                type(run) is dict
                and type(run.get("run_id")) is str
                and type(run.get("record_sha256")) is str
                and _DIGEST.fullmatch(run["record_sha256"])
            ):
                raise LeafFormatError(
                    "a prune leaf's 'runs' are objects with 'run_id' and 'record_sha256' "
                    "(sha256:<64 hex digits>)"
                )
    leaf: dict[str, Any] = value  # a dict: ``fields`` is None for anything else
    return leaf
