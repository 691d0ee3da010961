"""``rtgov compare`` and ``rtgov graph ...``: the experiment graph and the delta index.

Exit codes (besides 0, 2, 3, 4):
    8  ``compare``: the two sides are not comparable (the rows are printed all the same,
       under a banner naming every difference)
    10 ``compare``, ``graph``: a ledger frame does not check (as ``rtgov verify``)
    11 ``compare``, ``graph``: a ledger leaf the delta index cannot read: not JSON, not an
       object, an unknown kind, or a missing field (the message names the leaf)
    12 ``compare``, ``graph``: the log does not hash to its signed checkpoint's root

The delta index itself is never trusted: it is checked against the ledger and its own
digest before each use, and rebuilt (with a warning saying why) when either disagrees.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from pathlib import Path
from typing import Any

from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.errors import RecordNotFoundError

__all__ = [
    "EXIT_INCOMPARABLE",
    "EXIT_LEDGER_FRAME",
    "EXIT_LEDGER_LEAF",
    "EXIT_LEDGER_ROOT",
    "add_parsers",
    "run",
]

EXIT_INCOMPARABLE = 8
EXIT_LEDGER_FRAME = 10
EXIT_LEDGER_LEAF = 11
EXIT_LEDGER_ROOT = 12
MAX_OBSERVATION_NODES = 200_000
_KEYRING = "keys whose checkpoint signatures the index may match (default: rtgov.keyring)"
_MEASURED_UNITS = {"wall_time": "s", "cpu_time": "s", "gpu_time": "s"}


def _percentage(text: str) -> float:
    """A finite percentage from 0 to 10,000 for ``--threshold-pct`` (argparse: exit 2)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0 <= value <= 10_000:  # NaN fails too
        raise argparse.ArgumentTypeError(f"expected a percentage from 0 to 10000, not {text!r}")
    return value


def add_parsers(sub: Any) -> None:
    compare = sub.add_parser("compare", help="compare two runs, or a run and the baseline")
    compare.add_argument("a", help="run id, unique prefix, latest, or baseline")
    compare.add_argument("b", help="run id, unique prefix, latest, or baseline")
    compare.add_argument("--all", action="store_true", help="show unchanged rows too")
    compare.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    compare.add_argument(
        "--threshold-pct",
        type=_percentage,
        default=10.0,
        help="smallest change of a measured median that counts (default 10)",
    )
    compare.add_argument("--gates", type=Path, default=Path("gates.toml"))
    compare.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"), help=_KEYRING)

    report = sub.add_parser("report", help="write the self-contained HTML gate report of a run")
    report.add_argument("run", nargs="?", default="latest")
    report.add_argument("-o", "--out", type=Path, default=None, help="default: DIR/report.html")
    report.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"))

    graph = sub.add_parser("graph", help="query or export the experiment graph")
    graph.add_argument("--keyring", type=Path, default=Path("rtgov.keyring"), help=_KEYRING)
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
        type=_percentage,
        default=None,
        help="bad = this much above the first run",
    )
    lineage = qsub.add_parser("lineage", help="versions of an artifact, or of the baseline")
    lineage.add_argument("what", choices=("artifact", "baseline"))
    lineage.add_argument("name", nargs="?", help="artifact name")
    for q in (top, series, first, lineage):
        q.add_argument("--json", action="store_true", help="print JSON")
    export = gsub.add_parser("export", help="write the graph as GraphML or node-link JSON")
    export.add_argument("--format", choices=("graphml", "json"), default="graphml")
    export.add_argument(
        "--observations",
        default="latest",
        help="runs whose observations become nodes: latest (default), all, none, or run ids "
        "separated by commas",
    )
    export.add_argument("-o", "--out", type=Path, default=None)
    export.add_argument(
        "--force",
        action="store_true",
        help=f"export even more than {MAX_OBSERVATION_NODES:,} observation nodes",
    )
    gsub.add_parser("rebuild", help="recreate the delta index from the ledger")


def run(args: argparse.Namespace) -> int:
    from pytest_rtgov.store.delta_index import IndexLeafError, LedgerRootMismatchError
    from pytest_rtgov.store.ledger import LedgerCorruptError

    try:
        return _run(args)
    except LedgerCorruptError as exc:
        print(f"rtgov: ledger damaged: {exc}", file=sys.stderr)
        return EXIT_LEDGER_FRAME
    except IndexLeafError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_LEDGER_LEAF
    except LedgerRootMismatchError as exc:
        print(f"rtgov: {exc}", file=sys.stderr)
        return EXIT_LEDGER_ROOT


def _store(args: argparse.Namespace) -> Any:
    from pytest_rtgov.errors import RtgovError
    from pytest_rtgov.logs import log_event
    from pytest_rtgov.store.delta_index import DeltaIndexStore, NoKeys
    from pytest_rtgov.store.keys import load_trust, require_signatures

    try:
        trust = load_trust(
            keyring=args.keyring, state_dir=args.dir, required=require_signatures(False)
        )
    except RtgovError as exc:
        # Keys only let the index take a checkpoint's root instead of hashing the log.
        log_event("index.no_keys", level=logging.INFO, error=str(exc))
        return DeltaIndexStore(args.dir, trust=NoKeys())
    return DeltaIndexStore(args.dir, trust=trust)


def _run(args: argparse.Namespace) -> int:
    if args.command == "report":
        return _report(args)
    store = _store(args)
    if args.command == "compare":
        return _compare(args, store)
    if args.graph_command == "rebuild":
        index = store.rebuild()
        print(f"index rebuilt from the ledger: {len(index.runs)} runs, {index.rows} observations")
        return 0
    index = store.load()
    if args.graph_command == "export":
        return _export(args, index)
    return _query(args, index)


# -- compare ------------------------------------------------------------------------


def _run_id(args: argparse.Namespace, ref: str, index: Any) -> str:
    from pytest_rtgov.store.runs import RunStore

    run_id = RunStore(args.dir).resolve(ref)
    if run_id not in index.run_pos:
        raise RecordNotFoundError(
            f"run {run_id} is not in the ledger's history (was it recorded with a ledger?)"
        )
    return run_id


def _baseline_side(args: argparse.Namespace, fingerprint: str) -> tuple[dict, dict, str]:
    """Values and provenance of the baseline for ``fingerprint`` (or any, flagged)."""
    from pytest_rtgov.core.delta_index import _quartiles
    from pytest_rtgov.core.provenance import inputs_of_baseline
    from pytest_rtgov.store.files import read_json
    from pytest_rtgov.store.gates_file import load_gates

    gates = load_gates(args.gates)
    directory = Path(gates.baseline)
    if not directory.is_absolute():
        directory = args.gates.parent / directory
    env_path = directory / f"env-{fingerprint}.json"
    if not env_path.is_file():
        others = sorted(directory.glob("env-*.json"))
        if not others:
            raise RecordNotFoundError(f"no baseline in {directory}")
        env_path = others[0]
    env_doc = read_json(env_path)
    metrics_path = directory / "metrics.json"
    metrics_doc = read_json(metrics_path) if metrics_path.is_file() else {"subjects": {}}
    values: dict[tuple[str, str], tuple[Any, float, float]] = {}
    for subject, metrics in env_doc["subjects"].items():
        for metric, samples in metrics.items():
            if samples:
                median, q1, q3 = _quartiles([float(s) for s in samples])
                values[(subject, metric)] = (median, q1, q3, len(samples))
    for subject, metrics in metrics_doc["subjects"].items():
        for metric, recorded in metrics.items():
            if not recorded or metric.endswith("@calibrated"):
                continue
            first = recorded[0]
            if isinstance(first, str):
                values[(subject, metric)] = (first, math.nan, math.nan, 1)
            else:
                values[(subject, metric)] = (float(first), float(first), float(first), 1)
    seeds, datasets = inputs_of_baseline(metrics_doc["subjects"])
    environment = env_doc.get("environment", {})
    prov = {
        "fingerprint": env_doc.get("fingerprint", ""),
        "backend": environment.get("backend", ""),
        "environment": environment,
        "seeds": seeds,
        "dataset_digests": datasets,
    }
    return values, prov, f"baseline ({env_path})"


def _side(args: argparse.Namespace, ref: str, index: Any, other_fp: str) -> tuple[dict, dict, str]:
    if ref == "baseline":
        return _baseline_side(args, other_fp)
    run_id = _run_id(args, ref, index)
    info = index.runs[index.run_pos[run_id]]
    return index.run_values(run_id), info.provenance, f"run {run_id} ({info.code})"


def _compare(args: argparse.Namespace, store: Any) -> int:
    from pytest_rtgov.core.compare import compare_values
    from pytest_rtgov.core.provenance import comparability

    index = store.load()
    fp = ""
    for ref in (args.a, args.b):
        if ref != "baseline":
            run_id = _run_id(args, ref, index)
            fp = index.runs[index.run_pos[run_id]].fingerprint
            break
    values_a, prov_a, label_a = _side(args, args.a, index, fp)
    values_b, prov_b, label_b = _side(args, args.b, index, fp)
    reasons = comparability(prov_a, prov_b)
    rows = compare_values(values_a, values_b, threshold_pct=args.threshold_pct)
    shown = rows if args.all else [r for r in rows if r.changed]
    changed = sum(r.changed for r in rows)
    if args.format == "json":
        sys.stdout.write(
            pretty_json(
                {
                    "a": label_a,
                    "b": label_b,
                    "comparable": not reasons,
                    "not_comparable_because": reasons,
                    "rows": [r.to_dict() for r in shown],
                    "changed": changed,
                    "total": len(rows),
                }
            )
        )
    else:
        sys.stdout.write(
            _render_compare(label_a, label_b, reasons, shown, changed, len(rows), args.format)
        )
    return EXIT_INCOMPARABLE if reasons else 0


def _fmt(metric: str, value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, str):
        return value[:19] + "…" if len(value) > 20 else value
    if metric in _MEASURED_UNITS:
        return f"{value * 1e3:.3f} ms"
    if metric in ("peak_memory", "gpu_memory"):
        return f"{value / 2**20:.2f} MiB"
    return f"{value:.6g}"


def _render_compare(
    label_a: str, label_b: str, reasons: list[str], rows: list, changed: int, total: int, fmt: str
) -> str:
    lines = []
    head = f"A = {label_a}\nB = {label_b}"
    if reasons:
        head += "\nNOT COMPARABLE: " + "; ".join(reasons)
    summary = f"{changed} of {total} rows changed" + ("" if len(rows) == total else " (shown)")
    cells = [
        (
            r.subject,
            r.metric,
            _fmt(r.metric, r.a),
            _fmt(r.metric, r.b),
            f"{r.relative * 100:+.1f}%" if r.relative is not None else "",
            r.why,
        )
        for r in rows
    ]
    titles = ("subject", "metric", "A", "B", "change", "why")
    if fmt == "markdown":
        lines.append(head.replace("\n", "  \n"))
        lines.append("")
        lines.append("| " + " | ".join(titles) + " |")
        lines.append("|" + "---|" * len(titles))
        for c in cells:
            lines.append("| " + " | ".join(x.replace("|", "\\|") for x in c) + " |")
        lines.append("")
        lines.append(summary)
        return "\n".join(lines) + "\n"
    from rich.console import Console
    from rich.table import Table

    console = Console(file=__import__("io").StringIO(), width=160, color_system=None)
    console.print(head, highlight=False, markup=False)
    table = Table(*titles)
    for c in cells:
        table.add_row(*c)
    console.print(table)
    console.print(summary, highlight=False)
    return console.file.getvalue()  # type: ignore[attr-defined]


def _report(args: argparse.Namespace) -> int:
    from pytest_rtgov.publish.report_files import write_report
    from pytest_rtgov.store.keys import load_trust, require_signatures
    from pytest_rtgov.store.runs import RunStore

    record = RunStore(args.dir).read_covered(args.run)  # an uncovered record is refused
    trust = load_trust(keyring=args.keyring, state_dir=args.dir, required=require_signatures(False))
    out = write_report(
        args.out or args.dir / "report.html", record, state_dir=args.dir, trust=trust
    )
    print(f"report of run {record.run_id} written to {out}")
    return 0


# -- queries ------------------------------------------------------------------------


def _query(args: argparse.Namespace, index: Any) -> int:
    from pytest_rtgov.store.runs import RunStore

    if args.query == "top-regressions":
        run_id = _run_id(args, args.run, index)
        found = index.top_regressions(run_id, args.n)
        if args.json:
            sys.stdout.write(pretty_json({"run_id": run_id, "regressions": found}))
            return 0
        print(f"top regressions of run {run_id}:")
        for row in found:
            print(
                f"  {row['verdict'] or '-':8} {row['subject']} {row['metric']}: "
                f"{_fmt(row['metric'], row['value'])} vs baseline "
                f"{_fmt(row['metric'], row['baseline'])} ({row['relative'] * 100:+.1f}%)"
                + (f"  gate {row['gate']!r}" if row["gate"] else "")
            )
        if not found:
            print("  none")
        return 0
    if args.query == "series":
        series = index.series(args.subject, args.metric)
        if not series:
            raise RecordNotFoundError(f"no observations of {args.subject} {args.metric}")
        if args.json:
            rows = [
                {"run_id": i.run_id, "code": i.code, "value": v, "verdict": verdict}
                for i, v, verdict in series
            ]
            sys.stdout.write(
                pretty_json({"subject": args.subject, "metric": args.metric, "series": rows})
            )
            return 0
        for info, value, verdict in series:
            print(f"{info.run_id}  {info.code:30}  {_fmt(args.metric, value):>14}  {verdict}")
        return 0
    if args.query == "first-regression":
        if args.subject and args.metric:
            targets = [(args.subject, args.metric)]
        else:
            latest = RunStore(args.dir).resolve("latest")
            targets = [
                (r["subject"], r["metric"])
                for r in index.top_regressions(latest, 1000)
                if r["verdict"] in ("breach", "missing")
            ]
            if not targets:
                print(f"run {latest} breaches no gate: nothing regressed")
                return 0
        results = [
            index.first_regression(s, m, threshold_pct=args.threshold_pct) for s, m in targets
        ]
        if args.json:
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
        f"value {_fmt(metric, found['first_bad_value'])}; "
        f"{found['bad_runs']} bad run(s) since" + ("" if found["still_bad"] else ", since fixed"),
    ]
    if good is None:
        lines.append("  no good run before it in the recorded history")
        return "\n".join(lines)
    good_value = _fmt(metric, found["last_good_value"])
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
        if args.json:
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
    if args.json:
        sys.stdout.write(pretty_json(versions))
        return 0
    previous = None
    for a in versions:
        info = index.runs[index.run_pos[a["run_id"]]]
        note = "same as before" if a["digest"] == previous else "new content"
        print(f"{a['digest'][:23]}…  run {a['run_id']} ({info.code})  {a['subject']}  {note}")
        previous = a["digest"]
    return 0


# -- export -------------------------------------------------------------------------


def _export(args: argparse.Namespace, index: Any) -> int:
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
        runs = [_run_id(args, ref.strip(), index) for ref in choice.split(",") if ref.strip()]
    wanted = sum(index.rows_of_run(r).stop - index.rows_of_run(r).start for r in runs)
    if wanted > MAX_OBSERVATION_NODES and not args.force:
        print(
            f"rtgov: {wanted:,} observation nodes asked for; networkx needs about 2.6 KB "
            f"each (benches/graph.py), so this graph would take ~{wanted * 2600 / 2**30:.1f} GiB. "
            "Choose fewer runs with --observations, or pass --force",
            file=sys.stderr,
        )
        return 2
    graph = build_graph(index, observations_for=runs)
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
