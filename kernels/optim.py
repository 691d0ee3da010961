"""Optimizers updating a parameter dict in place: SGD with momentum, and Adam."""

from __future__ import annotations

from typing import Any

__all__ = ["SGD", "Adam"]


class SGD:
    """Stochastic gradient descent with optional (heavy-ball) momentum."""

    def __init__(self, params: dict[str, Any], *, lr: float = 0.1, momentum: float = 0.0) -> None:
        self.params, self.lr, self.momentum = params, lr, momentum
        self._velocity = {k: v * 0 for k, v in params.items()} if momentum else {}

    def step(self, grads: dict[str, Any]) -> None:
        for name, p in self.params.items():
            g = grads[name]
            if self.momentum:
                v = self._velocity[name]
                v *= self.momentum
                v += g
                g = v
            p -= self.lr * g


class Adam:
    """Adam (Kingma and Ba, 2015) with bias correction."""

    def __init__(
        self,
        params: dict[str, Any],
        *,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
    ) -> None:
        self.params, self.lr, self.betas, self.eps = params, lr, betas, eps
        self._m = {k: v * 0 for k, v in params.items()}
        self._v = {k: v * 0 for k, v in params.items()}
        self.t = 0

    def step(self, grads: dict[str, Any]) -> None:
        self.t += 1
        b1, b2 = self.betas
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for name, p in self.params.items():
            g = grads[name]
            m, v = self._m[name], self._v[name]
            m *= b1
            m += (1 - b1) * g
            v *= b2
            v += (1 - b2) * g * g
            p -= self.lr * (m / c1) / ((v / c2) ** 0.5 + self.eps)
