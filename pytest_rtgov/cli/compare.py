"""``rtgov compare``: two runs, or a run and the baseline, side by side."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

from pytest_rtgov.cli.delta import (
    KEYRING_HELP,
    open_store,
    percentage,
    run_id_in_index,
)
from pytest_rtgov.cli.options import add_gates, add_keyring, paths
from pytest_rtgov.core.canonical import pretty_json
from pytest_rtgov.core.constants import ExitCode
from pytest_rtgov.core.format import format_change, format_value
from pytest_rtgov.errors import RecordNotFoundError

__all__ = ["add_parsers", "run"]


def add_parsers(sub: Any) -> None:
    compare = sub.add_parser("compare", help="compare two runs, or a run and the baseline")
    compare.add_argument("a", help="run id, unique prefix, latest, or baseline")
    compare.add_argument("b", help="run id, unique prefix, latest, or baseline")
    compare.add_argument("--all", action="store_true", help="show unchanged rows too")
    compare.add_argument("--format", choices=("table", "json", "markdown"), default="table")
    compare.add_argument(
        "--threshold-pct",
        type=percentage,
        default=10.0,
        help="smallest change of a measured median that counts (default 10)",
    )
    add_gates(compare, "gates file naming the baseline, for the side `baseline`")
    add_keyring(compare, KEYRING_HELP.removesuffix(" (default: rtgov.keyring)"))
    from pytest_rtgov.cli import export as cli_export

    cli_export.add_report_parser(sub)


def run(args: argparse.Namespace) -> int:
    """``rtgov compare A B``: 0, or 8 when the sides are not comparable."""
    return _compare(args)


def _baseline_side(args: argparse.Namespace, fingerprint: str) -> tuple[dict, dict, str]:
    """Values and provenance of the baseline for ``fingerprint`` (or any, flagged)."""
    from pytest_rtgov.core.delta_index import quartiles
    from pytest_rtgov.core.provenance import inputs_of_baseline
    from pytest_rtgov.store.files import read_json

    directory = paths(args).baseline_dir()
    env_path = directory / f"env-{fingerprint}.json"
    if not env_path.is_file():
        others = sorted(directory.glob("env-*.json"))
        if not others:
            raise RecordNotFoundError(f"no baseline in {directory}")
        env_path = others[0]
    env_doc = read_json(env_path)
    metrics_path = directory / "metrics.json"
    metrics_doc = read_json(metrics_path) if metrics_path.is_file() else {"subjects": {}}
    values: dict[tuple[str, str], tuple[Any, float, float, int]] = {}
    for subject, metrics in env_doc["subjects"].items():
        for metric, samples in metrics.items():
            if samples:
                median, q1, q3 = quartiles([float(s) for s in samples])
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
    run_id = run_id_in_index(args, ref, index)
    info = index.runs[index.run_pos[run_id]]
    return index.run_values(run_id), info.provenance, f"run {run_id} ({info.code})"


def _compare(args: argparse.Namespace) -> int:
    from pytest_rtgov.core.compare import compare_values
    from pytest_rtgov.core.provenance import comparability

    index = open_store(args).load()
    fp = ""
    for ref in (args.a, args.b):
        if ref != "baseline":
            run_id = run_id_in_index(args, ref, index)
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
    return ExitCode.INCOMPARABLE if reasons else ExitCode.OK


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
            format_value(r.metric, r.a),
            format_value(r.metric, r.b),
            format_change(r.metric, r.a, r.b),
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
