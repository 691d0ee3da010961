"""Mini-batch training of :class:`kernels.mlp.MLP`, used by the reference workload."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from kernels.layers import cross_entropy, cross_entropy_backward
from kernels.mlp import MLP
from kernels.optim import SGD, Adam

__all__ = ["TrainResult", "accuracy", "train_mlp"]


@dataclass
class TrainResult:
    model: MLP
    epoch_losses: list[float] = field(default_factory=list)


def accuracy(model: MLP, x: Any, y: Any) -> float:
    return float((model.predict(x) == y).mean())


def train_mlp(
    model: MLP,
    x: Any,
    y: Any,
    *,
    epochs: int,
    batch_size: int,
    seed: int,
    optimizer: str = "adam",
    lr: float = 1e-3,
    on_epoch: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``model`` in place; the batch order comes from ``Generator(PCG64(seed))``."""
    xp = model.xp
    opt = Adam(model.params, lr=lr) if optimizer == "adam" else SGD(model.params, lr=lr)
    rng = np.random.Generator(np.random.PCG64(seed))
    result = TrainResult(model)
    n = x.shape[0]
    for epoch in range(epochs):
        order = xp.asarray(rng.permutation(n))
        total = 0.0
        for start in range(0, n, batch_size):
            idx = order[start : start + batch_size]
            xb, yb = x[idx], y[idx]
            logits, cache = model.forward(xb)
            total += cross_entropy(logits, yb) * xb.shape[0]
            opt.step(model.backward(cross_entropy_backward(logits, yb), cache))
        result.epoch_losses.append(total / n)
        if on_epoch is not None:
            on_epoch(epoch, total / n)
    return result
