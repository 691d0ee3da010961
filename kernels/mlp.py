"""A multi-layer perceptron built from :mod:`kernels.layers`.

Hidden blocks are linear -> layer norm -> activation; the last layer is linear and
returns logits. Parameters live in one ordered dict so optimizers and digests see
them in a fixed order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from kernels.layers import (
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    relu,
    relu_backward,
)

__all__ = ["MLP"]

_ACTIVATIONS = {"gelu": (gelu, gelu_backward), "relu": (relu, relu_backward)}


class MLP:
    """An MLP with ``sizes = (inputs, hidden..., classes)``, initialised from ``seed``."""

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        seed: int,
        xp: Any = np,
        activation: str = "gelu",
        dtype: Any = "float32",
    ) -> None:
        if len(sizes) < 2:
            raise ValueError(f"sizes needs at least input and output sizes, got {list(sizes)}")
        if activation not in _ACTIVATIONS:
            raise ValueError(
                f"invalid activation, expected one of {sorted(_ACTIVATIONS)} (not {activation!r})"
            )
        self.sizes = tuple(int(s) for s in sizes)
        self.activation = activation
        self.xp = xp
        rng = np.random.Generator(np.random.PCG64(seed))
        params: dict[str, Any] = {}
        for i, (fan_in, fan_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:], strict=True)):
            scale = np.sqrt(2.0 / fan_in)  # He initialisation
            params[f"l{i}.weight"] = rng.standard_normal((fan_in, fan_out)) * scale
            params[f"l{i}.bias"] = np.zeros(fan_out)
            if i < len(self.sizes) - 2:
                params[f"ln{i}.gamma"] = np.ones(fan_out)
                params[f"ln{i}.beta"] = np.zeros(fan_out)
        self.params = {k: xp.asarray(v, dtype=dtype) for k, v in params.items()}

    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    def forward(self, x: Any) -> tuple[Any, list[Any]]:
        """Logits for ``x`` and the cache :meth:`backward` needs."""
        act, _ = _ACTIVATIONS[self.activation]
        cache: list[Any] = []
        h = x
        for i in range(self.n_layers):
            w, b = self.params[f"l{i}.weight"], self.params[f"l{i}.bias"]
            z = linear(h, w, b)
            if i == self.n_layers - 1:
                cache.append((h,))
                return z, cache
            n, ln_cache = layer_norm(z, self.params[f"ln{i}.gamma"], self.params[f"ln{i}.beta"])
            cache.append((h, ln_cache, n))
            h = act(n)
        raise AssertionError("unreachable")

    def backward(self, dlogits: Any, cache: list[Any]) -> dict[str, Any]:
        """Gradients of every parameter, given the gradient of the loss on the logits."""
        _, act_backward = _ACTIVATIONS[self.activation]
        grads: dict[str, Any] = {}
        dh = dlogits
        for i in reversed(range(self.n_layers)):
            w = self.params[f"l{i}.weight"]
            if i == self.n_layers - 1:
                (h,) = cache[i]
                dz = dh
            else:
                h, ln_cache, n = cache[i]
                dn = act_backward(dh, n)
                dz, grads[f"ln{i}.gamma"], grads[f"ln{i}.beta"] = layer_norm_backward(
                    dn, self.params[f"ln{i}.gamma"], ln_cache
                )
            dh, grads[f"l{i}.weight"], grads[f"l{i}.bias"] = linear_backward(dz, h, w)
        return {k: grads[k] for k in self.params}

    def host_params(self) -> dict[str, np.ndarray]:
        """The parameters as numpy arrays (copied from the GPU on cupy), in order."""
        return {
            name: np.asarray(p.get() if hasattr(p, "get") else p) for name, p in self.params.items()
        }

    def predict(self, x: Any) -> Any:
        logits, _ = self.forward(x)
        return logits.argmax(axis=1)
