"""Counting for gate_quality.py: per condition, kernel and edit size; targets; the table."""

from __future__ import annotations

import statistics
from typing import Any

import _gate_edits as edits

STATUSES = ("breach", "unconfirmed", "pass")
TRUE_KEY = {"wall_time": "wall_effect", "cpu_time": "cpu_effect"}


def _status(session: dict[str, Any], kernel: str) -> str:
    status = session["rtgov"]["kernels"].get(kernel, {}).get("status", "absent")
    return status if status in STATUSES else "other"


def _unjudged(session: dict[str, Any], kernel: str) -> bool:
    """A pass on too few usable pairs: the gate did not judge (its reason says so)."""
    result = session["rtgov"]["kernels"].get(kernel, {})
    return result.get("status") == "pass" and "not judged" in (result.get("reason") or "")


def _flag(
    stats: dict[str, Any], ref: dict[str, Any] | None, kernel: str, field: str
) -> bool | None:
    """pytest-benchmark's ``--benchmark-compare-fail=<field>:10%`` on one kernel."""
    name = edits.BY_KERNEL[kernel].test[len("test_") :]
    if ref is None or name not in stats or name not in ref:
        return None
    return stats[name][field] / ref[name][field] * 100 - 100 > 10


def _bench_flags(session: dict[str, Any], kernel: str, base: dict[str, Any]) -> dict[str, Any]:
    b = session["pytest_benchmark"]
    return {
        "base mean:10%": _flag(b["stats"], base, kernel, "mean"),
        "base median:10%": _flag(b["stats"], base, kernel, "median"),
        "prev mean:10%": _flag(b["stats"], b["previous"], kernel, "mean"),
        "prev median:10%": _flag(b["stats"], b["previous"], kernel, "median"),
    }


def _median(values: list[float]) -> float | None:
    return round(statistics.median(values), 4) if values else None


def _touched(session: dict[str, Any]) -> set[str]:
    tests = {t for k in session["edited"] for t in edits.BY_KERNEL[k].touches}
    return {e.kernel for e in edits.EDITS if e.test in tests}


def summarise(
    sessions: list[dict[str, Any]],
    effects: dict[str, Any],
    kernels: list[str],
    before: dict[str, Any] | None,
    base: dict[str, Any] | None = None,
) -> dict[str, Any]:
    base = base or {}
    out: dict[str, Any] = {}
    for condition in sorted({s["condition"] for s in sessions}):
        mine = [s for s in sessions if s["condition"] == condition]
        unchanged = [s for s in mine if not s["edited"]]
        slowed = [s for s in mine if s["edited"]]
        n = len(unchanged)
        cond: dict[str, Any] = {
            "unchanged_sessions": n,
            "unchanged_failed": sum(s["rtgov"]["exit_status"] == 6 for s in unchanged),
            "unchanged_failed_ab": sum(
                any(_status(s, k) == "breach" for k in kernels) for s in unchanged
            ),
            "unchanged_not_judged": sum(_unjudged(s, k) for s in unchanged for k in kernels),
            "unchanged_kernels": {
                k: {st: sum(_status(s, k) == st for s in unchanged) for st in (*STATUSES, "other")}
                for k in kernels
            },
            "loadavg_1m_median": _median([s["loadavg_1m"][1] for s in mine]),
            "rtgov_wall_s_median": {
                "unchanged": _median([s["rtgov"]["wall_s"] for s in unchanged]),
                "slowed": _median([s["rtgov"]["wall_s"] for s in slowed]),
            },
            "benchmark_wall_s_median": _median([s["pytest_benchmark"]["wall_s"] for s in mine]),
        }
        # Kernels no edit of the session touched: unchanged checks inside slowed sessions.
        spare = [(s, k) for s in slowed for k in kernels if k not in _touched(s)]
        cond["slowed_sessions_untouched_kernel_breaches"] = {
            "breach": sum(_status(s, k) == "breach" for s, k in spare),
            "checks": len(spare),
        }
        bench_unchanged = {
            "sessions_failed_flag": sum(
                s["pytest_benchmark"]["exit_status"] == 1 for s in unchanged
            ),
        }
        for key in ("base mean:10%", "base median:10%", "prev mean:10%", "prev median:10%"):
            flags = [_bench_flags(s, k, base)[key] for s in unchanged for k in kernels]
            bench_unchanged[key] = {
                "flagged": sum(f is True for f in flags),
                "checks": sum(f is not None for f in flags),
                "sessions_failed": sum(
                    any(_bench_flags(s, k, base)[key] for k in kernels) for s in unchanged
                ),
            }
        cond["pytest_benchmark_unchanged"] = bench_unchanged
        edits_out: dict[str, Any] = {}
        for size in ("+10%", "+25%"):
            for k in kernels:
                runs = [s for s in slowed if s["size"] == size and k in s["edited"]]
                if not runs:
                    continue
                judged = [s["rtgov"]["kernels"][k] for s in runs if k in s["rtgov"]["kernels"]]
                metric = next((j.get("clock") or j.get("metric") for j in judged), "wall_time")
                true = effects.get(condition, {}).get(k, {}).get(size, {})
                true_v = true.get(TRUE_KEY.get(metric, "wall_effect"))
                reported = [
                    s["rtgov"]["kernels"][k]["relative"]
                    for s in runs
                    if s["rtgov"]["kernels"].get(k, {}).get("relative") is not None
                ]
                row: dict[str, Any] = {
                    "sessions": len(runs),
                    **{st: sum(_status(s, k) == st for s in runs) for st in (*STATUSES, "other")},
                    "pass_not_judged": sum(_unjudged(s, k) for s in runs),
                    "metric": metric,
                    "true_cpu": true.get("cpu_effect"),
                    "true_wall": true.get("wall_effect"),
                    "reported_median": _median(reported),
                    "reported_min": min(reported, default=None),
                    "reported_max": max(reported, default=None),
                    "within_3_points": None
                    if true_v is None
                    else sum(abs(r - true_v) <= 0.03 for r in reported),
                }
                for key in ("base mean:10%", "prev mean:10%", "prev median:10%"):
                    flags = [_bench_flags(s, k, base)[key] for s in runs]
                    row[f"pytest-benchmark {key}"] = sum(f is True for f in flags)
                edits_out[f"{k} {size}"] = row
        cond["edits"] = edits_out
        cond["targets"] = _targets(cond, before, condition)
        out[condition] = cond
    return out


def _targets(cond: dict[str, Any], before: dict[str, Any] | None, condition: str) -> dict[str, Any]:
    n = cond["unchanged_sessions"]
    rows = cond["edits"]

    def caught(size: str) -> bool:
        sel = [r for key, r in rows.items() if key.endswith(size)]
        return bool(sel) and all(r["breach"] * 20 >= 19 * r["sessions"] for r in sel)

    def effect_ok(r: dict[str, Any]) -> bool:
        true_v = r["true_wall"] if r["metric"] == "wall_time" else r["true_cpu"]
        med = r["reported_median"]
        return true_v is not None and med is not None and abs(med - true_v) <= 0.03

    targets: dict[str, Any] = {
        "unchanged failing <= 1 in 20": cond["unchanged_failed"] * 20 <= n,
        "+25% caught >= 19 in 20, every kernel": caught("+25%"),
        "+10% caught >= 19 in 20, every kernel": caught("+10%"),
        "reported effect within 3 points (median)": bool(rows)
        and all(effect_ok(r) for r in rows.values()),
    }
    if before:
        old = before["summary"].get(condition, {}).get("rtgov_wall_s_median", {})
        now = cond["rtgov_wall_s_median"]
        targets["session wall time vs before (ratio of medians)"] = {
            key: None if not old.get(key) or not now[key] else round(now[key] / old[key], 2)
            for key in ("unchanged", "slowed")
        }
    return targets


def session_line(s: dict[str, Any]) -> str:
    verdicts = " ".join(
        f"{k}={v['status']}({(v['relative'] or 0) * 100:+.1f}%)"
        for k, v in sorted(s["rtgov"]["kernels"].items())
        if k in _touched(s) or not s["edited"]
    )
    return (
        f"{s['index'] + 1:2d} {s['condition']:5s} {s['scenario']:32s} "
        f"load {s['loadavg_1m'][1]:4.1f} "
        f"rtgov exit {s['rtgov']['exit_status']} {s['rtgov']['wall_s']:5.1f}s "
        f"bench exit {s['pytest_benchmark']['exit_status']}: {verdicts}"
    )


def table(result: dict[str, Any]) -> str:
    lines = [f"gate quality on {result['commit'][:12]}"]
    for condition, cond in result["summary"].items():
        lines.append(
            f"\n[{condition}] load avg (median) {cond['loadavg_1m_median']}; unchanged sessions "
            f"failed {cond['unchanged_failed']}/{cond['unchanged_sessions']}; rtgov session wall "
            f"median {cond['rtgov_wall_s_median']}"
        )
        lines.append(
            f"{'edit':22s} {'true cpu':>8s} {'true wall':>9s} {'breach':>6s} {'unconf':>6s} "
            f"{'pass':>4s} {'reported':>8s} {'pb base':>7s} {'pb prev':>7s}"
        )
        for key, r in cond["edits"].items():
            def pct(v: float | None) -> str:
                return "-" if v is None else f"{v * 100:+.1f}%"

            lines.append(
                f"{key:22s} {pct(r['true_cpu']):>8s} {pct(r['true_wall']):>9s} "
                f"{r['breach']:>3d}/{r['sessions']:<2d} {r['unconfirmed']:>6d} {r['pass']:>4d} "
                f"{pct(r['reported_median']):>8s} {r['pytest-benchmark base mean:10%']:>7d} "
                f"{r['pytest-benchmark prev mean:10%']:>7d}"
            )
        for name, ok in cond["targets"].items():
            shown = ok if isinstance(ok, dict) else ("met" if ok else "NOT met")
            lines.append(f"  target {name}: {shown}")
    return "\n".join(lines)
