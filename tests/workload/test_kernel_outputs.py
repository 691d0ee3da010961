"""The kernels' outputs, checkpointed and kept: what a replay compares element by element.

One test per kernel, each applying that kernel once to the seeded ``arrays`` inputs
(conftest.py) and checkpointing each array it returns with ``keep=True``: a replay then
names a divergence down to the element (docs/replay.md). They are apart from
test_kernel_perf.py so that hashing and storing an output is never inside a measured
round, and so that no timing gate selects them.

Order matters for the fault hook (``KERNELS_FAULT``, kernels/faults.py): this file runs
before test_kernel_perf.py and test_validation.py (and so before any training stage is
set up), and a kernel's own test comes before every test whose kernel calls it
(``softmax`` before ``cross_entropy_backward``, ``layer_norm`` before its backward), so
the first checkpoint a faulted kernel changes is its own output. A replay runs the tests
in the order they ran (core/replay_order.py), not in the record's node-id order.
"""

from __future__ import annotations

import numpy as np

from kernels import (
    cross_entropy_backward,
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
)


def _keep(rtgov, kernel, *outputs):
    for name, output in outputs:
        rtgov.checkpoint(f"{kernel}.{name}", output, keep=True)


def test_linear_output(arrays, rtgov):
    _keep(rtgov, "linear", ("out", linear(arrays["x"], arrays["w"], arrays["b"])))


def test_linear_backward_output(arrays, rtgov):
    dx, dw, db = linear_backward(arrays["x"], arrays["x"], arrays["w"])
    _keep(rtgov, "linear_backward", ("dx", dx), ("dw", dw), ("db", db))


def test_gelu_output(arrays, rtgov):
    _keep(rtgov, "gelu", ("out", gelu(arrays["x"])))


def test_gelu_backward_output(arrays, rtgov):
    _keep(rtgov, "gelu_backward", ("dx", gelu_backward(arrays["x"], arrays["x"])))


def test_relu_output(arrays, rtgov):
    _keep(rtgov, "relu", ("out", relu(arrays["x"])))


def test_relu_backward_output(arrays, rtgov):
    _keep(rtgov, "relu_backward", ("dx", relu_backward(arrays["x"], arrays["x"])))


def test_softmax_output(arrays, rtgov):
    _keep(rtgov, "softmax", ("out", softmax(arrays["logits"])))


def test_softmax_backward_output(arrays, rtgov, xp):
    s = xp.full((1000, 100), 0.01, dtype=np.float32)  # a uniform softmax, not softmax's
    _keep(rtgov, "softmax_backward", ("dx", softmax_backward(arrays["logits"], s)))


def test_cross_entropy_backward_output(arrays, rtgov):
    grad = cross_entropy_backward(arrays["logits"], arrays["labels"])
    _keep(rtgov, "cross_entropy_backward", ("dlogits", grad))


def test_layer_norm_output(arrays, rtgov, xp):
    gamma, beta = xp.ones(256, dtype=np.float32), xp.zeros(256, dtype=np.float32)
    out, (x_hat, inv_std) = layer_norm(arrays["x"], gamma, beta)
    _keep(rtgov, "layer_norm", ("out", out), ("x_hat", x_hat), ("inv_std", inv_std))


def test_layer_norm_backward_output(arrays, rtgov, xp):
    gamma, beta = xp.ones(256, dtype=np.float32), xp.zeros(256, dtype=np.float32)
    _, cache = layer_norm(arrays["x"], gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(arrays["x"], gamma, cache)
    _keep(rtgov, "layer_norm_backward", ("dx", dx), ("dgamma", dgamma), ("dbeta", dbeta))
