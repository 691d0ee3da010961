"""The code edits gate_quality.py gates, and their true effect measured standalone.

Each edit is a literal replacement in a workload file (``kernels/*.py``, or the synthetic
kernels this module adds to a session's copy), at two sizes: roughly +10% and +25% of
the work of the test it targets. ``touches`` names every workload test whose body runs
the edited code (the target first), so a session can edit several kernels whose tests
are disjoint. ``python benches/_gate_edits.py measure BASE EDITED TEST...`` times the
tests' bodies of two trees alternated in one process and prints the effects as JSON.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

PERF = "tests/workload/test_kernel_perf.py"


@dataclass(frozen=True)
class Edit:
    kernel: str
    touches: tuple[str, ...]  # test function names, the target first
    path: str
    changes: dict[str, tuple[tuple[str, str], ...]]  # size -> (old, new) replacements

    @property
    def test(self) -> str:
        return self.touches[0]


SYNTHETIC = '''"""Synthetic kernels added by the gate-quality benchmark: fixed repeated work."""

import numpy as np

_RNG = np.random.Generator(np.random.PCG64(0))
_A = _RNG.standard_normal((96, 96))
_V = _RNG.standard_normal(20000)


def s_matmul():
    for _ in range(40):
        _A @ _A


def s_cumsum():
    for _ in range(40):
        np.cumsum(_V)


def s_pyloop():
    total = 0
    for i in range(20000):
        total += i * i
    return total
'''

SYNTHETIC_TESTS = '''

# --- synthetic kernels added by benches/gate_quality.py (not in the shipped file) ---
from kernels import synthetic as _synthetic  # noqa: E402


@ROUNDS
def test_s_matmul():
    _synthetic.s_matmul()


@ROUNDS
def test_s_cumsum():
    _synthetic.s_cumsum()


@ROUNDS
def test_s_pyloop():
    _synthetic.s_pyloop()
'''

LAYERS, SYN = "kernels/layers.py", "kernels/synthetic.py"
_XHAT = "    x_hat = (x - mean) * inv_std\n"
_NORM = "    return e / e.sum(axis=axis, keepdims=True)\n"
_LIN = "    return x @ weight + bias\n"
_LSE = "    log_z = xp.log(xp.exp(shifted).sum(axis=1))\n"
_MM = "    for _ in range({}):\n        _A @ _A\n"
_CS = "    for _ in range({}):\n        np.cumsum(_V)\n"
_PY = "    for i in range({}):\n"

# Sized in the allocator regime measuring sessions pin (measure/allocator.py: a kept
# heap, no page faults per temporary), where each workload kernel's cost is what it
# computes: GELU's and the MLP step's is mostly the float32 cube (``x**3``, a float32
# ``pow``: about half the GELU body each), so their edits cube a slice of the input;
# the others add copies, checks, float64 round trips or recomputations. (A float32
# power of negative numbers is the slow path: ``abs(x) ** 2.5`` costs a fraction.)
_D_INNER = "    d_inner = _GELU_C * (1.0 + 3 * 0.044715 * x**2)\n"
_CHECK = "    assert xp.isfinite(x[:, : x.shape[1] // {}] ** 3).all()\n"
_DN = "                dn = act_backward(dh, n)\n"
_MLP_CHECK = "                assert np.isfinite(n[:, : n.shape[1] {}] ** 3).all()\n"
_GRAD = "    return grad / logits.shape[0]\n"
_COPY = "    grad = grad * 1.0\n    grad = grad + 0.0\n"

EDITS: tuple[Edit, ...] = (
    Edit(
        "gelu",
        ("test_gelu_forward_backward", "test_mlp_train_step"),
        LAYERS,
        {
            # the backward pass checks the cube of a fifth of the features is finite
            "+10%": ((_D_INNER, _CHECK.format(5) + _D_INNER),),
            # of half of them
            "+25%": ((_D_INNER, _CHECK.format(2) + _D_INNER),),
        },
    ),
    Edit(
        "layer_norm",
        ("test_layer_norm_forward_backward", "test_mlp_train_step"),
        LAYERS,
        {
            # x_hat from a recomputed mean, copied
            "+10%": (
                (
                    _XHAT,
                    "    x_hat = (x - x.mean(axis=-1, keepdims=True)) * inv_std\n"
                    "    x_hat = x_hat * 1.0\n",
                ),
            ),
            # x_hat from a recomputed mean, and the variance in float64
            "+25%": (
                (_XHAT, "    x_hat = (x - x.mean(axis=-1, keepdims=True)) * inv_std\n"),
                (
                    "    var = x.var(axis=-1, keepdims=True)\n",
                    "    var = x.var(axis=-1, keepdims=True, dtype=xp.float64).astype(x.dtype)\n",
                ),
            ),
        },
    ),
    Edit(
        "softmax",
        ("test_softmax", "test_cross_entropy_forward_backward", "test_mlp_train_step"),
        LAYERS,
        {
            # the exponentials copied twice
            "+10%": ((_NORM, "    e = e * 1.0\n    e = e + 0.0\n" + _NORM),),
            # the exponentials clipped against underflow, and copied
            "+25%": ((_NORM, "    e = xp.maximum(e, 1e-30)\n    e = e * 1.0\n" + _NORM),),
        },
    ),
    Edit(
        "linear",
        ("test_linear_forward", "test_mlp_train_step"),
        LAYERS,
        {
            # the output checked finite, and copied twice
            "+10%": (
                (
                    _LIN,
                    "    out = x @ weight + bias\n"
                    "    assert _xp(x).isfinite(out).all()\n"
                    "    out = out * 1.0\n"
                    "    return out + 0.0\n",
                ),
            ),
            # non-finite outputs replaced by zero
            "+25%": ((_LIN, "    return _xp(x).nan_to_num(x @ weight + bias, copy=False)\n"),),
        },
    ),
    Edit(
        "cross_entropy",
        ("test_cross_entropy_forward_backward",),
        LAYERS,
        {
            # the gradient copied five times
            "+10%": ((_GRAD, _COPY + _COPY + "    grad = grad * 1.0\n" + _GRAD),),
            # the log-sum-exp computed twice and averaged, and the gradient copied
            "+25%": (
                (_LSE, _LSE + "    log_z = 0.5 * (log_z + xp.log(xp.exp(shifted).sum(axis=1)))\n"),
                (_GRAD, "    grad = grad * 1.0\n" + _GRAD),
            ),
        },
    ),
    Edit(
        "mlp",
        ("test_mlp_train_step",),
        "kernels/mlp.py",
        {
            # the backward pass checks the cube of a quarter of the hidden units
            "+10%": ((_DN, _DN + _MLP_CHECK.format("// 4")),),
            # of five eighths of them
            "+25%": ((_DN, _DN + _MLP_CHECK.format("* 5 // 8")),),
        },
    ),
    Edit(
        "s_matmul",
        ("test_s_matmul",),
        SYN,
        {
            "+10%": ((_MM.format(40), _MM.format(44)),),
            "+25%": ((_MM.format(40), _MM.format(50)),),
        },
    ),
    Edit(
        "s_cumsum",
        ("test_s_cumsum",),
        SYN,
        {
            "+10%": ((_CS.format(40), _CS.format(44)),),
            "+25%": ((_CS.format(40), _CS.format(50)),),
        },
    ),
    Edit(
        "s_pyloop",
        ("test_s_pyloop",),
        SYN,
        {
            "+10%": ((_PY.format(20000), _PY.format(22000)),),
            "+25%": ((_PY.format(20000), _PY.format(25000)),),
        },
    ),
)
BY_KERNEL = {e.kernel: e for e in EDITS}

# Kernels edited together in one session: their target tests are disjoint, and no
# edit of a group touches another group member's target test.
GROUPS: tuple[tuple[str, ...], ...] = (
    ("gelu", "layer_norm", "softmax", "s_matmul"),
    ("linear", "cross_entropy", "s_cumsum"),
    ("mlp", "s_pyloop"),
)


def add_synthetic(root: Path) -> None:
    """Add the synthetic kernels and their tests to a workload copy."""
    (root / SYN).write_text(SYNTHETIC)
    perf = root / PERF
    perf.write_text(perf.read_text() + SYNTHETIC_TESTS)


def apply(root: Path, kernels: tuple[str, ...], size: str) -> None:
    """Apply the ``size`` edit of every kernel named to the tree at ``root``."""
    for name in kernels:
        edit = BY_KERNEL[name]
        path = root / edit.path
        text = path.read_text()
        for old, new in edit.changes[size]:
            if text.count(old) != 1:
                raise SystemExit(f"{edit.path}: edit {name!r} expects {old!r} exactly once")
            text = text.replace(old, new)
        path.write_text(text)


def _load(root: str) -> tuple[object, object]:
    """The test module and the ``xp`` module of the workload at ``root``, freshly imported."""
    for name in list(sys.modules):
        if name == "kernels" or name.startswith(("kernels.", "tests")):
            del sys.modules[name]
    sys.path.insert(0, root)
    try:
        import kernels
        import tests.workload.test_kernel_perf as perf

        return perf, kernels.get_xp()
    finally:
        sys.path.remove(root)


def measure(base: str, edited: str, tests: list[str], pairs: int) -> dict[str, object]:
    """Median paired ratio (edited / base) - 1 of each test body, CPU and wall time, in
    the allocator regime a measuring session uses (glibc's mmap threshold pinned)."""
    from pytest_rtgov.measure.allocator import pin

    regime = pin()
    (perf_b, xp), (perf_e, _) = _load(base), _load(edited)
    arrays = perf_b.arrays.__wrapped__(xp)  # type: ignore[attr-defined]
    rng = random.Random(0)
    out: dict[str, object] = {}
    for test in tests:
        bodies = []
        for perf in (perf_b, perf_e):
            fn = getattr(perf, test)
            args = {"arrays": arrays, "xp": xp}
            names = fn.__code__.co_varnames[: fn.__code__.co_argcount]
            bodies.append((fn, [args[n] for n in names]))
        cpu: list[float] = []
        wall: list[float] = []
        for i in range(pairs + 3):
            times: list[tuple[int, int]] = [(0, 0), (0, 0)]
            order = [0, 1] if rng.random() < 0.5 else [1, 0]
            for side in order:
                fn, fargs = bodies[side]
                c0, w0 = time.thread_time_ns(), time.perf_counter_ns()
                fn(*fargs)
                times[side] = (time.thread_time_ns() - c0, time.perf_counter_ns() - w0)
            if i >= 3:  # warm-up pairs
                cpu.append(times[1][0] / max(times[0][0], 1))
                wall.append(times[1][1] / max(times[0][1], 1))
        cq, wq = statistics.quantiles(cpu, n=4), statistics.quantiles(wall, n=4)
        out[test] = {
            "cpu_effect": statistics.median(cpu) - 1,
            "wall_effect": statistics.median(wall) - 1,
            "cpu_ratio_quartiles": [round(cq[0], 4), round(cq[2], 4)],
            "wall_ratio_quartiles": [round(wq[0], 4), round(wq[2], 4)],
            "pairs": pairs,
            "allocator": regime,
        }
    return out


if __name__ == "__main__":
    if len(sys.argv) < 5 or sys.argv[1] != "measure":
        raise SystemExit("usage: _gate_edits.py measure BASE EDITED PAIRS TEST...")
    print(json.dumps(measure(sys.argv[2], sys.argv[3], sys.argv[5:], int(sys.argv[4]))))
