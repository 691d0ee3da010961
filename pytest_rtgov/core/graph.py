"""The experiment graph: runs, the code and machines they ran on, baselines and their
lineage, artifacts, subjects, and (for chosen runs) observations with delta edges.

Built from a :class:`~pytest_rtgov.core.delta_index.DeltaIndex`, itself rebuilt from the
ledger, so the graph can be thrown away and rebuilt at any time. Nodes and edges are
added in sorted order, so two builds of the same history are identical, GraphML
included.

Node ids and kinds:

- ``run:<id>`` (run), ``commit:<sha>`` (commit), ``env:<fingerprint>`` (environment),
  ``baseline:<n>`` (baseline, the n-th version the ledger saw; ``baseline:0`` is one
  that was there before the ledger began), ``subject:<id>`` (subject),
  ``artifact:<sha256>`` (artifact), ``stage:<name>|<key>`` (stage: a ``@stage`` cache
  entry, one node per stage and key, whichever runs used it);
- ``obs:<run>|<subject>|<metric>`` (observation), only for the runs in ``observations_for``.

Edges (a ``kind`` attribute; keys equal the kind):

- run -ran_on-> environment; run -built_from-> commit;
- run -compared_against-> baseline (the version in force when the run ended);
- baseline -derived_from-> previous baseline, and -derived_from-> the run it took values from;
- artifact -produced_by-> run;
- run -used_stage-> stage (every run with a ``stage`` leaf for it: outcome, reason);
  stage -produced_by-> run (the runs that executed and stored it); stage -derived_from->
  the upstream stages' nodes of the same run (via upstream);
- observation -produced_by-> run, -observes-> subject;
- observation -delta-> the baseline's observation of the same subject and metric,
  carrying ``delta``, ``relative``, ``statistic`` (the gate) and ``verdict``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import networkx as nx

from pytest_rtgov.core.delta_index import VERDICTS, DeltaIndex
from pytest_rtgov.core.stage_graph import stage_node_id, stage_parts
from pytest_rtgov.core.verdict import UNGATED

__all__ = ["EDGE_KINDS", "NODE_KINDS", "build_graph", "stage_node_id"]

NODE_KINDS = (
    "run",
    "commit",
    "environment",
    "baseline",
    "subject",
    "observation",
    "artifact",
    "stage",
)
EDGE_KINDS = (
    "ran_on",
    "built_from",
    "compared_against",
    "derived_from",
    "produced_by",
    "observes",
    "delta",
    "used_stage",
)


def _clean(attrs: dict[str, Any]) -> dict[str, Any]:
    """GraphML takes str, int, float and bool only: None and NaN become ''."""
    out = {}
    for key, value in sorted(attrs.items()):
        if value is None or (isinstance(value, float) and math.isnan(value)):
            value = ""
        out[key] = value
    return out


def build_graph(
    index: DeltaIndex,
    *,
    observations_for: Iterable[str] = (),
    stages: Iterable[Mapping[str, Any]] = (),
) -> nx.MultiDiGraph:
    """The graph of ``index``'s history; ``stages``: the ledger's ``stage`` leaves
    (``store.ledger_stages``), whose runs get stage nodes."""
    nodes: dict[str, dict[str, Any]] = {}
    edges: list[tuple[str, str, str, dict[str, Any]]] = []

    def node(node_id: str, kind: str, **attrs: Any) -> str:
        nodes.setdefault(node_id, _clean({"kind": kind, **attrs}))
        return node_id

    def edge(u: str, v: str, kind: str, **attrs: Any) -> None:
        edges.append((u, v, kind, _clean({"kind": kind, **attrs})))

    # Baseline versions in ledger order; a run compares against the latest one before it.
    baseline_ids: list[tuple[int, str]] = []
    for event in index.baselines:
        b = node(
            f"baseline:{event.sequence}",
            "baseline",
            at=event.at,
            who=event.who,
            reason=event.reason,
            fingerprint=event.fingerprint,
            changes=event.changes,
            seal_sha256=event.seal_sha256,
            leaf_index=event.leaf_index,
        )
        if baseline_ids:
            edge(b, baseline_ids[-1][1], "derived_from", via="refresh")
        if event.run_id and event.run_id in index.run_pos:
            edge(b, f"run:{event.run_id}", "derived_from", via="values")
        baseline_ids.append((event.leaf_index, b))
    compared: dict[str, str] = {}

    for info in index.runs:
        r = node(
            f"run:{info.run_id}",
            "run",
            started_at=info.started_at,
            status=info.status,
            exit_status=info.exit_status,
            commit=info.commit,
            branch=info.branch,
            dirty=info.dirty,
            diff_sha256=info.diff_sha256,
            fingerprint=info.fingerprint,
            backend=info.backend,
        )
        env = info.provenance.get("environment", {})
        e = node(f"env:{info.fingerprint}", "environment", **{k: str(v) for k, v in env.items()})
        edge(r, e, "ran_on")
        if info.commit:
            c = node(f"commit:{info.commit}", "commit", branch=info.branch)
            edge(r, c, "built_from", dirty=info.dirty, diff_sha256=info.diff_sha256)
        leaf = index.run_leaf.get(info.run_id)
        before = [b for at, b in baseline_ids if leaf is None or at < leaf]
        if info.status != UNGATED:  # only gated runs compare
            if before:
                target = before[-1]
            else:  # the baseline was there before this ledger began
                target = node("baseline:0", "baseline", reason="present before the ledger began")
            compared[info.run_id] = target
            edge(r, target, "compared_against")

    for artifact in index.artifacts:
        a = node(f"artifact:{artifact['digest']}", "artifact", name=artifact["name"])
        edge(a, f"run:{artifact['run_id']}", "produced_by", subject=artifact["subject"])

    stage_nodes, stage_edges = stage_parts(stages, index.run_pos)
    for node_id, attrs in stage_nodes.items():
        nodes.setdefault(node_id, _clean(attrs))
    edges += [(u, v, kind, _clean(attrs)) for u, v, kind, attrs in stage_edges]

    for subject, _ in index.keys:
        node(
            f"subject:{subject}",
            "subject",
            name=subject.removeprefix("fixture:"),
            subject_kind="fixture" if subject.startswith("fixture:") else "test",
        )

    for run_id in sorted(set(observations_for)):
        rows = index.rows_of_run(run_id)
        keys = index.column("key")[rows].tolist()
        base = index.column("base")[rows].tolist()
        verdict = index.column("verdict")[rows].tolist()
        for i, k in enumerate(keys):
            subject, metric = index.keys[k]
            value = index.value_of(rows.start + i)
            o = node(
                f"obs:{run_id}|{subject}|{metric}",
                "observation",
                metric=metric,
                value=value if not isinstance(value, float) else float(value),
            )
            edge(o, f"run:{run_id}", "produced_by")
            edge(o, f"subject:{subject}", "observes")
            b = base[i]
            if not math.isnan(b) and verdict[i]:
                run_node = nodes[f"run:{run_id}"]
                target = compared.get(run_id, "baseline:0")
                bo = node(
                    f"{target}|{subject}|{metric}",
                    "observation",
                    metric=metric,
                    value=b,
                    baseline=target,
                )
                delta = (value - b) if isinstance(value, float) else None
                edge(
                    o,
                    bo,
                    "delta",
                    delta=delta,
                    relative=(delta / abs(b)) if delta is not None and b else None,
                    statistic=index.gate_of.get(k, ""),
                    verdict=VERDICTS[verdict[i]],
                    run_status=run_node["status"],
                )

    graph = nx.MultiDiGraph()
    for node_id in sorted(nodes):
        graph.add_node(node_id, **nodes[node_id])
    for u, v, kind, attrs in sorted(edges, key=lambda e: (e[0], e[1], e[2])):
        graph.add_edge(u, v, key=kind, **attrs)
    return graph
