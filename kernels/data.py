"""A seeded synthetic classification data set."""

from __future__ import annotations

import numpy as np

__all__ = ["make_classification"]


def make_classification(
    n_samples: int, n_features: int, n_classes: int, *, seed: int, separation: float = 2.5
) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian blobs around random class centres, with a random linear mixing.

    Everything is drawn from one ``numpy.random.Generator(PCG64(seed))``, so the same
    arguments give bit-identical arrays on every machine. Returns ``(x, y)`` as
    float32 features and int64 labels, on the host (move them with ``xp.asarray``).
    """
    if min(n_samples, n_features, n_classes) < 1:
        raise ValueError("n_samples, n_features and n_classes must all be positive")
    rng = np.random.Generator(np.random.PCG64(seed))
    centres = rng.standard_normal((n_classes, n_features)) * separation
    y = rng.integers(0, n_classes, size=n_samples)
    noise = rng.standard_normal((n_samples, n_features))
    mixing = np.eye(n_features) + 0.3 * rng.standard_normal((n_features, n_features))
    x = (centres[y] + noise) @ mixing
    return x.astype(np.float32), y.astype(np.int64)
