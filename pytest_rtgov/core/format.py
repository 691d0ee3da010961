"""Formatting of numbers and names for people: durations, sizes, integers, digests,
metric values, changes (better or worse) and shortened node ids (pure: values in,
strings out).

Every face (terminal, HTML report, exports, CLI, gates.toml messages) formats with
these functions, so one value reads the same everywhere. Node ids are shortened only
by dropping a prefix all of them share (shown once as a heading), never truncated.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from pytest_rtgov.core.metrics import BUILTIN_METRICS, CALIBRATED_SUFFIX

__all__ = [
    "common_prefix",
    "format_bytes",
    "format_change",
    "format_digest",
    "format_ns",
    "format_number",
    "format_quantity",
    "format_seconds",
    "format_value",
    "higher_is_better",
    "shorten_ids",
]

_TIME_SCALES = (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9))
_SIZE_SCALES = (("GiB", float(1 << 30)), ("MiB", float(1 << 20)), ("KiB", float(1 << 10)))
DIGEST_PREFIX = 12  # hex digits shown of a digest: "sha256:" + 12


def format_number(value: float | int) -> str:
    """A plain number: integers (and integral floats such as seeds) exactly, others
    with six significant digits.

    >>> format_number(20261122), format_number(20261122.0), format_number(0.93125)
    ('20261122', '20261122', '0.93125')
    """
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 2**53:
        return str(int(value))
    return f"{value:.6g}"


def format_seconds(seconds: float | None, digits: int = 3) -> str:
    """Seconds in the largest fitting unit, ``digits`` significant digits.

    >>> format_seconds(0.25), format_seconds(1.5e-3), format_seconds(0.0)
    ('250 ms', '1.5 ms', '0 s')
    """
    if seconds is None or (isinstance(seconds, float) and math.isnan(seconds)):
        return "-"
    if seconds == 0:
        return "0 s"
    for unit, scale in _TIME_SCALES:
        if abs(seconds) >= scale:
            return f"{seconds / scale:.{digits}g} {unit}"
    return f"{seconds * 1e9:.{digits}g} ns"


def format_ns(ns: float | None) -> str:
    """Nanoseconds in the largest fitting unit, two decimals (table columns).

    >>> format_ns(1_500_000), format_ns(999)
    ('1.50 ms', '999 ns')
    """
    if ns is None:
        return "-"
    for unit, scale in (("s", 1e9), ("ms", 1e6), ("us", 1e3)):
        if abs(ns) >= scale:
            return f"{ns / scale:.2f} {unit}"
    return f"{ns:.0f} ns"


def format_bytes(n: float | None, digits: int = 0) -> str:
    """Bytes in binary units: one decimal, or ``digits`` significant digits.

    >>> format_bytes(3 * 1024 * 1024), format_bytes(512 * 2**20, digits=4), format_bytes(12)
    ('3.0 MiB', '512 MiB', '12 B')
    """
    if n is None:
        return "-"
    for unit, scale in _SIZE_SCALES:
        if abs(n) >= scale:
            return f"{n / scale:.{digits}g} {unit}" if digits else f"{n / scale:.1f} {unit}"
    return f"{n:.0f} B"


def format_quantity(metric: str, value: float) -> str:
    """Seconds and bytes of built-in metrics in readable units, four significant
    digits; other values as :func:`format_number` (gate rules, gates.toml messages).

    >>> format_quantity("wall_time", 0.25), format_quantity("peak_memory", 3 * 2**20)
    ('250 ms', '3 MiB')
    """
    info = BUILTIN_METRICS.get(metric)
    if info is None or value == 0:
        return format_number(value)
    if info.is_time:
        return format_seconds(value, digits=4)
    return format_bytes(value, digits=4) if abs(value) >= 1024 else f"{value:.4g} B"


def format_digest(value: str, length: int = DIGEST_PREFIX) -> str:
    """A digest's algorithm and first ``length`` hex digits; other text unchanged.

    >>> format_digest("sha256:" + "ab" * 32)
    'sha256:abababababab…'
    """
    algorithm, sep, hexdigits = value.partition(":")
    if sep and algorithm.isalnum() and len(hexdigits) > length:
        return f"{algorithm}:{hexdigits[:length]}…"
    return value


def format_value(metric: str, value: object) -> str:
    """A metric value as a person reads it: built-in times and sizes in units,
    calibrated times as ratios, digests shortened, integers exact.

    Values are in the catalogue's units (seconds, bytes).

    >>> format_value("wall_time", 0.0015), format_value("seed", 20261122.0)
    ('1.5 ms', '20261122')
    """
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, str):
        return format_digest(value)
    if not isinstance(value, (int, float)):
        return str(value)
    if metric.endswith(CALIBRATED_SUFFIX):
        return f"{value:.3g}x"
    info = BUILTIN_METRICS.get(metric)
    if info is not None:
        return format_seconds(value) if info.is_time else format_bytes(value, digits=3)
    return format_number(value)


def _finite(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def higher_is_better(metric: str, recorded: bool | None = None) -> bool | None:
    """A metric's direction: the catalogue's for built-in (and calibrated) metrics,
    else what the test recorded (``None``: no direction).

    >>> higher_is_better("wall_time@calibrated"), higher_is_better("acc", True)
    (False, True)
    """
    info = BUILTIN_METRICS.get(metric.removesuffix(CALIBRATED_SUFFIX))
    return info.higher_is_better if info is not None else recorded


def format_change(
    metric: str,
    baseline: object,
    current: object,
    *,
    worse_relative: float | None = None,
    direction: bool | None = None,
    absolute: bool = False,
) -> str:
    """How a value moved from ``baseline`` to ``current``: the percentage signed as the
    value moved (a drop is negative), then whether that is better or worse.

    ``worse_relative``, a gate's relative change (positive: worse), is the percentage
    shown when given (the one the gate judged: an A/B gate's median paired ratio), and
    its sign says better or worse. Otherwise the change of the two values is shown and
    the metric's direction says which way is worse (``direction``: higher is better,
    else the catalogue's for built-in metrics); with no direction, no word.
    ``absolute`` puts the signed difference in the metric's units first. Nothing when
    a side is not a number. Every face that shows a change (terminal, HTML report,
    exports, CLI) calls this.

    >>> format_change("val_accuracy", 0.97, 0.942, worse_relative=0.0289)
    '-2.9% (worse)'
    >>> format_change("wall_time", 0.1, 0.112), format_change("wall_time", 0.1, 0.09)
    ('+12.0% (worse)', '-10.0% (better)')
    >>> format_change("loss", 2.0, 1.5, direction=False, absolute=True)
    '-0.5, -25.0% (better)'
    >>> format_change("peak_memory", 0, 2**20), format_change("loss", 1.0, 1.5)
    ('+inf (worse)', '+50.0%')
    """
    before, after = _finite(baseline), _finite(current)
    if before is None or after is None:
        return ""
    moved = after - before
    way = direction if direction is not None else higher_is_better(metric)
    if worse_relative is not None and not math.isnan(worse_relative):
        worse: float | None = worse_relative
        if way is None:  # a gate without a known direction: the values' own sign
            way = (worse_relative > 0) != (moved > 0) if moved else False
        relative = -worse_relative if way else worse_relative
    else:
        worse = None if way is None else (-moved if way else moved)
        relative = moved / abs(before) if before else math.copysign(math.inf, moved)
        relative = relative if moved else 0.0
    if not relative:
        text = "0.0%"
    elif math.isinf(relative):
        text = "+inf" if relative > 0 else "-inf"
    else:
        text = f"{relative * 100:+.1f}%"
    if absolute:
        text = f"{'+' if moved > 0 else ''}{format_value(metric, moved)}, {text}"
    if worse is not None:
        text += " (worse)" if worse > 0 else " (better)" if worse < 0 else " (unchanged)"
    return text


def common_prefix(ids: Sequence[str]) -> str:
    """The directory or module prefix every id shares, ending at a ``/`` or ``::``.

    Nothing when there are no ids, or when dropping it would leave an id empty.

    >>> common_prefix(["tests/w/test_v.py::test_a", "tests/w/test_v.py::test_b[1]"])
    'tests/w/test_v.py::'
    >>> common_prefix(["tests/a.py::t", "tests/b.py::t"]), common_prefix(["t/a.py::t"])
    ('tests/', 't/a.py::')
    """
    if not ids:
        return ""
    low, high = min(ids), max(ids)  # the sorted extremes share what all share
    size = next((i for i, (a, b) in enumerate(zip(low, high, strict=False)) if a != b), len(low))
    shared = low[:size]
    # Cut after the last "::" (a module or class), else after the last "/" of the path;
    # never inside a test's name or its parameters.
    module, sep, _ = shared.rpartition("::")
    if sep and "[" not in module:
        prefix = module + sep
    else:
        path = shared.split("::", 1)[0]
        prefix = path[: path.rfind("/") + 1]
    if any(len(i) <= len(prefix) for i in ids):
        return ""
    return prefix


def shorten_ids(ids: Sequence[str]) -> tuple[str, list[str]]:
    """(the common prefix of the node ids, each id without it): nothing else is dropped.

    Only ids with a ``::`` are node ids; others (a session fixture's name) are kept
    whole and do not stop the node ids from sharing a prefix.

    >>> shorten_ids(["t/x.py::a", "t/x.py::b", "tmp_path_factory [main]"])
    ('t/x.py::', ['a', 'b', 'tmp_path_factory [main]'])
    """
    prefix = common_prefix([i for i in ids if "::" in i])
    return prefix, [i[len(prefix) :] if "::" in i else i for i in ids]
