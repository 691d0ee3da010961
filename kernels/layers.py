"""Layers with forward and backward passes, vectorized over the batch.

Every function takes its array module from its inputs (``xp``) so the same code runs
on numpy and cupy. Backward functions take the upstream gradient first. Each public
kernel carries the test-only fault hook (:mod:`kernels.faults`, ``KERNELS_FAULT``): it is
the function itself unless that variable names it.
"""

from __future__ import annotations

import math
from typing import Any

from kernels.faults import faultable

__all__ = [
    "cross_entropy",
    "cross_entropy_backward",
    "gelu",
    "gelu_backward",
    "layer_norm",
    "layer_norm_backward",
    "linear",
    "linear_backward",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
]

Array = Any  # numpy.ndarray or cupy.ndarray


def _xp(a: Array) -> Any:
    # cupy arrays carry their module; numpy arrays are the fallback.
    module = type(a).__module__.split(".")[0]
    if module == "cupy":
        import cupy  # type: ignore[import-not-found]

        return cupy
    import numpy

    return numpy


@faultable
def linear(x: Array, weight: Array, bias: Array) -> Array:
    """``x @ weight + bias``; x is (batch, in), weight (in, out), bias (out,)."""
    return x @ weight + bias


@faultable
def linear_backward(dy: Array, x: Array, weight: Array) -> tuple[Array, Array, Array]:
    """Gradients of :func:`linear` with respect to x, weight and bias."""
    return dy @ weight.T, x.T @ dy, dy.sum(axis=0)


@faultable
def relu(x: Array) -> Array:
    return _xp(x).maximum(x, 0)


@faultable
def relu_backward(dy: Array, x: Array) -> Array:
    return dy * (x > 0)


_GELU_C = math.sqrt(2.0 / math.pi)


@faultable
def gelu(x: Array) -> Array:
    """GELU, tanh approximation (Hendrycks and Gimpel)."""
    xp = _xp(x)
    return 0.5 * x * (1.0 + xp.tanh(_GELU_C * (x + 0.044715 * x**3)))


@faultable
def gelu_backward(dy: Array, x: Array) -> Array:
    xp = _xp(x)
    inner = _GELU_C * (x + 0.044715 * x**3)
    t = xp.tanh(inner)
    d_inner = _GELU_C * (1.0 + 3 * 0.044715 * x**2)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * d_inner)


@faultable
def softmax(x: Array, axis: int = -1) -> Array:
    """Softmax, shifted by the row maximum so large logits do not overflow."""
    xp = _xp(x)
    shifted = x - x.max(axis=axis, keepdims=True)
    e = xp.exp(shifted)
    return e / e.sum(axis=axis, keepdims=True)


@faultable
def softmax_backward(dy: Array, s: Array, axis: int = -1) -> Array:
    """Gradient through softmax, given its output ``s``."""
    return s * (dy - (dy * s).sum(axis=axis, keepdims=True))


@faultable
def cross_entropy(logits: Array, labels: Array) -> float:
    """Mean cross-entropy of integer ``labels`` under ``logits`` (log-sum-exp stable)."""
    xp = _xp(logits)
    shifted = logits - logits.max(axis=1, keepdims=True)
    log_z = xp.log(xp.exp(shifted).sum(axis=1))
    picked = shifted[xp.arange(logits.shape[0]), labels]
    return float((log_z - picked).mean())


@faultable
def cross_entropy_backward(logits: Array, labels: Array) -> Array:
    """Gradient of :func:`cross_entropy` with respect to the logits."""
    xp = _xp(logits)
    grad = softmax(logits, axis=1)
    grad[xp.arange(logits.shape[0]), labels] -= 1.0
    return grad / logits.shape[0]


@faultable
def layer_norm(
    x: Array, gamma: Array, beta: Array, eps: float = 1e-5
) -> tuple[Array, tuple[Array, Array]]:
    """Layer normalisation over the last axis; returns the output and a cache for backward."""
    xp = _xp(x)
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    inv_std = 1.0 / xp.sqrt(var + eps)
    x_hat = (x - mean) * inv_std
    return x_hat * gamma + beta, (x_hat, inv_std)


@faultable
def layer_norm_backward(
    dy: Array, gamma: Array, cache: tuple[Array, Array]
) -> tuple[Array, Array, Array]:
    """Gradients of :func:`layer_norm` with respect to x, gamma and beta."""
    x_hat, inv_std = cache
    n = x_hat.shape[-1]
    dgamma = (dy * x_hat).sum(axis=0)
    dbeta = dy.sum(axis=0)
    dx_hat = dy * gamma
    dx = (
        inv_std
        / n
        * (
            n * dx_hat
            - dx_hat.sum(axis=-1, keepdims=True)
            - x_hat * (dx_hat * x_hat).sum(axis=-1, keepdims=True)
        )
    )
    return dx, dgamma, dbeta
