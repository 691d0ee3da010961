"""The stage part of the experiment graph, from the ledger's ``stage`` leaves. Pure.

One node per cache entry, ``stage:<name>|<key>``, whichever runs used it: a stage that
hit in ten sessions is one node with ten ``used_stage`` edges. Upstream links are drawn
within a run: a leaf's ``upstream`` names stages, and the nodes those names had in the
same run are the ones it derived from. ``rtgov graph query stages`` reads
:func:`stage_history` (no networkx needed); ``core.graph.build_graph`` adds
:func:`stage_parts` to the graph.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_rtgov.core.canonical import canonical_json

__all__ = ["StageNode", "stage_history", "stage_node_id", "stage_parts"]


def stage_node_id(stage: str, key: str) -> str:
    return f"stage:{stage}|{key}"


@dataclass
class StageNode:
    """One (stage, key): its sealed facts and the runs that used it."""

    name: str
    key: str
    envelope_sha256: str = ""
    outputs: dict[str, str] = field(default_factory=dict)
    # one per run, setups folded: run_id, outcome, reason, worker (comma-joined)
    uses: list[dict[str, str]] = field(default_factory=list)
    derived_from: list[str] = field(default_factory=list)  # node ids

    @property
    def id(self) -> str:
        return stage_node_id(self.name, self.key)

    @property
    def produced_by(self) -> list[str]:
        """The runs that executed and stored this entry."""
        return [u["run_id"] for u in self.uses if "stored" in u["outcome"].split(", ")]

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "stage": self.name,
            "key": self.key,
            "envelope_sha256": self.envelope_sha256,
            "outputs": dict(sorted(self.outputs.items())),
            "uses": list(self.uses),
            "produced_by": self.produced_by,
            "derived_from": list(self.derived_from),
        }


def stage_history(
    stages: Iterable[Mapping[str, Any]], runs: Mapping[str, int] | None = None
) -> list[StageNode]:
    """The stage nodes of ``stages`` (leaves in ledger order; only those of ``runs``
    when given), in the order of their first use."""
    nodes: dict[str, StageNode] = {}
    folds: dict[tuple[str, str], dict[str, list[str]]] = {}
    in_run: dict[tuple[str, str], list[str]] = {}  # (run, stage name) -> its node ids
    upstream: dict[tuple[str, str], set[str]] = {}  # (run, node id) -> upstream names
    for leaf in stages:
        run_id, name, key = str(leaf["run_id"]), str(leaf["stage"]), str(leaf["key"])
        if runs is not None and run_id not in runs:
            continue
        node = nodes.setdefault(stage_node_id(name, key), StageNode(name, key))
        outcome = str(leaf.get("outcome", ""))
        if leaf.get("envelope_sha256") and not node.envelope_sha256:
            node.envelope_sha256 = str(leaf["envelope_sha256"])
        outputs = leaf.get("outputs")
        if isinstance(outputs, Mapping) and outcome != "miss" and not node.outputs:
            node.outputs = {str(k): str(v) for k, v in outputs.items()}  # the sealed ones
        fold = folds.get((run_id, node.id))
        if fold is None:
            fold = folds[(run_id, node.id)] = {"outcome": [], "reason": [], "worker": []}
            node.uses.append({"run_id": run_id})
        for name_ in fold:
            value = str(leaf.get(name_) or "")
            if value and value not in fold[name_]:
                fold[name_].append(value)
        ids = in_run.setdefault((run_id, name), [])
        if node.id not in ids:
            ids.append(node.id)
        upstream.setdefault((run_id, node.id), set()).update(
            str(u) for u in leaf.get("upstream", ())
        )
    for node in nodes.values():
        for use in node.uses:
            fold = folds[(use["run_id"], node.id)]
            use.update({name_: ", ".join(values) for name_, values in fold.items()})
            for up in sorted(upstream[(use["run_id"], node.id)]):
                for target in in_run.get((use["run_id"], up), ()):
                    if target not in node.derived_from:
                        node.derived_from.append(target)
    return list(nodes.values())


def stage_parts(
    stages: Iterable[Mapping[str, Any]], runs: Mapping[str, int]
) -> tuple[dict[str, dict[str, Any]], list[tuple[str, str, str, dict[str, Any]]]]:
    """Node attributes by id and ``(from, to, kind, attributes)`` edges for the graph:
    run -used_stage-> stage (outcome, reason, worker), stage -produced_by-> run (it
    stored the entry), stage -derived_from-> upstream stage (via upstream)."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str, str, dict[str, Any]]] = []
    for node in stage_history(stages, runs):
        nodes[node.id] = {
            "kind": "stage",
            "name": node.name,
            "key": node.key,
            "envelope_sha256": node.envelope_sha256,
            "outputs": canonical_json(node.outputs).decode(),
        }
        for use in node.uses:
            attrs = {k: v for k, v in use.items() if k != "run_id"}
            edges.append((f"run:{use['run_id']}", node.id, "used_stage", attrs))
        for run_id in node.produced_by:
            edges.append((node.id, f"run:{run_id}", "produced_by", {}))
        for target in node.derived_from:
            edges.append((node.id, target, "derived_from", {"via": "upstream"}))
    return nodes, [(u, v, kind, {"kind": kind, **attrs}) for u, v, kind, attrs in edges]
