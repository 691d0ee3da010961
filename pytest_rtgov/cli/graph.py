"""``rtgov graph query|export|rebuild``: the experiment graph and the delta index."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.cli.delta import (
    KEYRING_HELP,
    open_store,
    percentage,
    run_id_in_index,
)
from pytest_rtgov.cli.options import add_format, add_keyring, add_out
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.format import format_change, format_digest, format_value
from pytest_rtgov.core.verdict import BREACHING
from pytest_rtgov.errors import InvalidOptionError, RecordNotFoundError

__all__ = ["MAX_OBSERVATION_NODES", "add_parsers", "run"]

MAX_OBSERVATION_NODES = 200_000


def add_parsers(sub: Any) -> None:

    graph = sub.add_parser("graph", help="query or export the experiment graph")
    add_keyring(graph, KEYRING_HELP.removesuffix(" (default: rtgov.keyring)"))
    gsub = graph.add_subparsers(dest="graph_command", required=True, metavar="ACTION")
    query = gsub.add_parser("query", help="top regressions, series, first regression, lineage")
    qsub = query.add_subparsers(dest="query", required=True, metavar="QUERY")
    top = qsub.add_parser("top-regressions", help="a run's breaches and largest increases")
    top.add_argument("run", nargs="?", default="latest")
    top.add_argument("-n", type=int, default=10)
    series = qsub.add_parser("series", help="one metric across every run")
    series.add_argument("subject")
    series.add_argument("metric")
    first = qsub.add_parser(
        "first-regression", help="where a metric started breaching, and the commit range"
    )
    first.add_argument("subject", nargs="?", help="default: every breach of the latest run")
    first.add_argument("metric", nargs="?")
    first.add_argument(
        "--threshold-pct",
        type=percentage,
        default=None,
        help="bad = this much above the first run",
    )
    lineage = qsub.add_parser("lineage", help="versions of an artifact, or of the baseline")
    lineage.add_argument("what", choices=("artifact", "baseline"))
    lineage.add_argument("name", nargs="?", help="artifact name")
    stages = qsub.add_parser(
        "stages", help="@stage cache entries: the runs that used each, what it derived from"
    )
    stages.add_argument("name", nargs="?", help="one stage (default: every stage)")
    for q in (top, series, first, lineage, stages):
        add_format(q, ("text", "json"), "text", "text (default) or json", old_json=True)
    export = gsub.add_parser("export", help="write the graph as GraphML or node-link JSON")
    add_format(export, ("graphml", "json"), "graphml", "graphml (default) or node-link json")
    export.add_argument(
        "--observations",
        default="latest",
        help="runs whose observations become nodes: latest (default), all, none, or run ids "
        "separated by commas",
    )
    add_out(export, "default: rtgov-graph.graphml or rtgov-graph.json")
    export.add_argument(
        "--force",
        action="store_true",
        help=f"export even more than {MAX_OBSERVATION_NODES:,} observation nodes",
    )
    gsub.add_parser("rebuild", help="recreate the delta index from the ledger")


def run(args: argparse.Namespace) -> int:
    """``rtgov graph ACTION``: 0, or 10-12 when the ledger cannot be indexed."""
    return _run(args)


def _run(args: argparse.Namespace) -> int:
    store = open_store(args)
    if args.graph_command == "rebuild":
        index = store.rebuild()
        print(f"index rebuilt from the ledger: {len(index.runs)} runs, {index.rows} observations")
        return 0
    index = store.load()
    if args.graph_command == "export":
        return _export(args, index, store)
    if args.query == "stages":
        return _stages(args, index, store)
    return _query(args, index)


# -- queries ------------------------------------------------------------------------


def _query(args: argparse.Namespace, index: Any) -> int:
    from pytest_rtgov.store.runs import RunStore

    if args.query == "top-regressions":
        run_id = run_id_in_index(args, args.run, index)
        found = index.top_regressions(run_id, args.n)
        if args.format == "json":
            sys.stdout.write(pretty_json({"run_id": run_id, "regressions": found}))
            return 0
        print(f"top regressions of run {run_id}:")
        for row in found:
            print(
                f"  {row['verdict'] or '-':8} {row['subject']} {row['metric']}: "
                f"{format_value(row['metric'], row['value'])} vs baseline "
                f"{format_value(row['metric'], row['baseline'])} "
                f"({format_change(row['metric'], row['baseline'], row['value'])})"
                + (f"  gate {row['gate']!r}" if row["gate"] else "")
            )
        if not found:
            print("  none")
        return 0
    if args.query == "series":
        series = index.series(args.subject, args.metric)
        if not series:
            raise RecordNotFoundError(f"no observations of {args.subject} {args.metric}")
        if args.format == "json":
            rows = [
                {"run_id": i.run_id, "code": i.code, "value": v, "verdict": verdict}
                for i, v, verdict in series
            ]
            sys.stdout.write(
                pretty_json({"subject": args.subject, "metric": args.metric, "series": rows})
            )
            return 0
        for info, value, verdict in series:
            shown = format_value(args.metric, value)
            print(f"{info.run_id}  {info.code:30}  {shown:>14}  {verdict}")
        return 0
    if args.query == "first-regression":
        if args.subject and args.metric:
            targets = [(args.subject, args.metric)]
        else:
            latest = RunStore(args.dir).resolve("latest")
            targets = [
                (r["subject"], r["metric"])
                for r in index.top_regressions(latest, 1000)
                if r["verdict"] in BREACHING
            ]
            if not targets:
                print(f"run {latest} breaches no gate: nothing regressed")
                return 0
        results = [
            index.first_regression(s, m, threshold_pct=args.threshold_pct) for s, m in targets
        ]
        if args.format == "json":
            sys.stdout.write(pretty_json([_regression_dict(r) for r in results if r]))
            return 0
        for (subject, metric), found in zip(targets, results, strict=True):
            print(_describe_regression(subject, metric, found))
        return 0
    return _lineage(args, index)


def _regression_dict(found: dict[str, Any]) -> dict[str, Any]:
    out = dict(found)
    for key in ("first_bad", "last_good"):
        info = found[key]
        out[key] = (
            None
            if info is None
            else {
                "run_id": info.run_id,
                "code": info.code,
                "commit": info.commit,
                "dirty": info.dirty,
            }
        )
    return out


def _describe_regression(subject: str, metric: str, found: dict[str, Any] | None) -> str:
    if found is None:
        return f"{subject} {metric}: never regressed in the recorded history"
    bad, good = found["first_bad"], found["last_good"]
    lines = [
        f"{subject} {metric}: first bad run {bad.run_id} ({bad.code}), "
        f"value {format_value(metric, found['first_bad_value'])}; "
        f"{found['bad_runs']} bad run(s) since" + ("" if found["still_bad"] else ", since fixed"),
    ]
    if good is None:
        lines.append("  no good run before it in the recorded history")
        return "\n".join(lines)
    good_value = format_value(metric, found["last_good_value"])
    lines.append(f"  last good run {good.run_id} ({good.code}), value {good_value}")
    if good.commit and bad.commit and good.commit != bad.commit:
        lines.append(f"  commit range: {good.commit[:12]}..{bad.commit[:12]}")
        lines.append(f"  git bisect start {bad.commit} {good.commit}")
    elif good.commit and good.commit == bad.commit:
        before, after = good.diff_sha256[:8] or "clean", bad.diff_sha256[:8] or "clean"
        what = f"uncommitted changes (diff {before} -> {after})"
        lines.append(f"  same commit {bad.commit[:12]}: the change is in {what}")
    return "\n".join(lines)


def _lineage(args: argparse.Namespace, index: Any) -> int:
    if args.what == "baseline":
        events = [b.to_dict() for b in index.baselines]
        if args.format == "json":
            sys.stdout.write(pretty_json(events))
            return 0
        for e in events:
            source = f"from run {e['run_id']}" if e["run_id"] else "signed as is"
            print(
                f"baseline:{e['sequence']}  {e['at']}  {e['who']}  {source}  "
                f"{e['changes']} change(s)  leaf {e['leaf_index']}  reason: {e['reason']}"
            )
        return 0
    if not args.name:
        names = sorted({a["name"] for a in index.artifacts})
        print("artifacts: " + (", ".join(names) if names else "none recorded"))
        return 0
    versions = [a for a in index.artifacts if a["name"] == args.name]
    if not versions:
        raise RecordNotFoundError(f"no artifact {args.name!r} in the history")
    if args.format == "json":
        sys.stdout.write(pretty_json(versions))
        return 0
    previous = None
    for a in versions:
        info = index.runs[index.run_pos[a["run_id"]]]
        note = "same as before" if a["digest"] == previous else "new content"
        digest = format_digest(a["digest"], 16)
        print(f"{digest}  run {a['run_id']} ({info.code})  {a['subject']}  {note}")
        previous = a["digest"]
    return 0


# -- export -------------------------------------------------------------------------


def _stages(args: argparse.Namespace, index: Any, store: Any) -> int:
    from pytest_rtgov.core.stage_graph import stage_history
    from pytest_rtgov.store.stage_leaves import ledger_stages

    nodes = stage_history(ledger_stages(store), index.run_pos)
    if args.name:
        nodes = [n for n in nodes if n.name == args.name]
        if not nodes:
            raise RecordNotFoundError(f"no stage {args.name!r} in the ledger's history")
    if args.format == "json":
        sys.stdout.write(pretty_json([n.to_dict() for n in nodes]))
        return 0
    if not nodes:
        print("stages: none recorded")
    for n in nodes:
        ups = [t.removeprefix("stage:").rpartition("|") for t in n.derived_from]
        derived = ", ".join(f"{name}|{key[:12]}" for name, _, key in ups)
        print(
            f"stage:{n.name}|{n.key[:12]}  used by {len(n.uses)} run(s)"
            + (f"  derived from {derived}" if derived else "")
        )
        for use in n.uses:
            reason = f"  {use['reason']}" if use["reason"] else ""
            print(f"  run {use['run_id']}  {use['outcome']}{reason}")
    return 0


def _export(args: argparse.Namespace, index: Any, store: Any) -> int:
    from pytest_rtgov.extras import require

    require("networkx", extra="graph", feature="rtgov graph export")
    import networkx as nx

    from pytest_rtgov.core.graph import build_graph

    choice = args.observations
    if choice == "none":
        runs: list[str] = []
    elif choice == "all":
        runs = [r.run_id for r in index.runs]
    elif choice == "latest":
        runs = [index.runs[-1].run_id] if index.runs else []
    else:
        refs = [ref.strip() for ref in choice.split(",") if ref.strip()]
        runs = [run_id_in_index(args, ref, index) for ref in refs]
    wanted = sum(index.rows_of_run(r).stop - index.rows_of_run(r).start for r in runs)
    if wanted > MAX_OBSERVATION_NODES and not args.force:
        raise InvalidOptionError(
            f"{wanted:,} observation nodes asked for; networkx needs about 2.6 KB "
            f"each (benches/graph.py), so this graph would take ~{wanted * 2600 / 2**30:.1f} GiB. "
            "Choose fewer runs with --observations, or pass --force"
        )
    from pytest_rtgov.store.stage_leaves import ledger_stages

    graph = build_graph(index, observations_for=runs, stages=ledger_stages(store))
    out = args.out or Path(f"rtgov-graph.{'graphml' if args.format == 'graphml' else 'json'}")
    if args.format == "graphml":
        nx.write_graphml(graph, out)
    else:
        data = nx.node_link_data(graph, edges="edges")
        out.write_text(json.dumps(data, sort_keys=True, indent=1) + "\n", encoding="utf-8")
    print(
        f"graph with {graph.number_of_nodes()} nodes and {graph.number_of_edges()} edges "
        f"written to {out}"
    )
    return 0
