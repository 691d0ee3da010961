"""Kernel performance tests: each body runs warmup + rounds times, every round measured.

Their inputs are the ``arrays`` fixture (conftest.py); the kernels' outputs on the same
inputs are checkpointed once, outside these measured rounds, by test_kernel_outputs.py."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import (
    MLP,
    Adam,
    cross_entropy,
    cross_entropy_backward,
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    softmax,
)

ROUNDS = pytest.mark.rtgov(rounds=7, warmup=1)


@ROUNDS
def test_linear_forward(arrays):
    for _ in range(10):
        linear(arrays["x"], arrays["w"], arrays["b"])


@ROUNDS
def test_gelu_forward_backward(arrays):
    y = gelu(arrays["x"])
    gelu_backward(y, arrays["x"])


@ROUNDS
def test_softmax(arrays):
    for _ in range(5):
        softmax(arrays["logits"])


@ROUNDS
def test_cross_entropy_forward_backward(arrays):
    cross_entropy(arrays["logits"], arrays["labels"])
    cross_entropy_backward(arrays["logits"], arrays["labels"])


@ROUNDS
def test_layer_norm_forward_backward(arrays, xp):
    gamma, beta = xp.ones(256, dtype=np.float32), xp.zeros(256, dtype=np.float32)
    y, cache = layer_norm(arrays["x"], gamma, beta)
    layer_norm_backward(y, gamma, cache)


@ROUNDS
def test_mlp_train_step(arrays, xp):
    model = MLP((256, 256, 100), seed=3, xp=xp)
    opt = Adam(model.params, lr=1e-3)
    labels = arrays["labels"][:512]
    logits, cache = model.forward(arrays["x"])
    opt.step(model.backward(cross_entropy_backward(logits, labels), cache))
