"""Kernel correctness: gradients against finite differences, determinism, stability."""

from __future__ import annotations

import numpy as np
import pytest

import kernels
from kernels import (
    MLP,
    SGD,
    Adam,
    cross_entropy,
    cross_entropy_backward,
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    make_classification,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
    train_mlp,
)


def numeric_grad(f, x: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of the scalar function ``f`` at ``x`` (float64)."""
    grad = np.zeros_like(x)
    it = np.nditer(x, flags=["multi_index"])
    for _ in it:
        i = it.multi_index
        old = x[i]
        x[i] = old + eps
        hi = f()
        x[i] = old - eps
        lo = f()
        x[i] = old
        grad[i] = (hi - lo) / (2 * eps)
    return grad


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.Generator(np.random.PCG64(1234))


def test_linear_backward_matches_finite_differences(rng):
    x, w, b = rng.standard_normal((4, 3)), rng.standard_normal((3, 5)), rng.standard_normal(5)
    upstream = rng.standard_normal((4, 5))
    dx, dw, db = linear_backward(upstream, x, w)
    loss = lambda: float((linear(x, w, b) * upstream).sum())  # noqa: E731
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(dw, numeric_grad(loss, w), rtol=1e-6, atol=1e-8)
    np.testing.assert_allclose(db, numeric_grad(loss, b), rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize(("fwd", "bwd"), [(relu, relu_backward), (gelu, gelu_backward)])
def test_activation_backward_matches_finite_differences(rng, fwd, bwd):
    x = rng.standard_normal((6, 7))
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    upstream = rng.standard_normal(x.shape)
    loss = lambda: float((fwd(x) * upstream).sum())  # noqa: E731
    np.testing.assert_allclose(bwd(upstream, x), numeric_grad(loss, x), rtol=1e-5, atol=1e-8)


def test_softmax_backward_matches_finite_differences(rng):
    x, upstream = rng.standard_normal((3, 6)), rng.standard_normal((3, 6))
    loss = lambda: float((softmax(x) * upstream).sum())  # noqa: E731
    analytic = softmax_backward(upstream, softmax(x))
    np.testing.assert_allclose(analytic, numeric_grad(loss, x), rtol=1e-5, atol=1e-9)


def test_cross_entropy_backward_matches_finite_differences(rng):
    logits, labels = rng.standard_normal((5, 4)), rng.integers(0, 4, size=5)
    loss = lambda: cross_entropy(logits, labels)  # noqa: E731
    analytic = cross_entropy_backward(logits, labels)
    np.testing.assert_allclose(analytic, numeric_grad(loss, logits), rtol=1e-5, atol=1e-9)


def test_layer_norm_backward_matches_finite_differences(rng):
    x = rng.standard_normal((4, 6))
    gamma, beta = rng.standard_normal(6), rng.standard_normal(6)
    upstream = rng.standard_normal((4, 6))
    loss = lambda: float((layer_norm(x, gamma, beta)[0] * upstream).sum())  # noqa: E731
    _, cache = layer_norm(x, gamma, beta)
    dx, dgamma, dbeta = layer_norm_backward(upstream, gamma, cache)
    np.testing.assert_allclose(dx, numeric_grad(loss, x), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dgamma, numeric_grad(loss, gamma), rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(dbeta, numeric_grad(loss, beta), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("activation", ["gelu", "relu"])
def test_mlp_backward_matches_finite_differences(activation):
    x, y = make_classification(6, 4, 3, seed=5)
    model = MLP((4, 5, 5, 3), seed=6, activation=activation, dtype="float64")
    x = x.astype(np.float64)

    def loss() -> float:
        return cross_entropy(model.forward(x)[0], y)

    logits, cache = model.forward(x)
    grads = model.backward(cross_entropy_backward(logits, y), cache)
    assert list(grads) == list(model.params)
    for name, p in model.params.items():
        np.testing.assert_allclose(
            grads[name], numeric_grad(loss, p), rtol=1e-4, atol=1e-7, err_msg=name
        )


def test_softmax_is_stable_on_large_logits():
    x = np.array([[1e4, 1e4 - 1.0, -1e4], [-1e30, 0.0, 1e30]])
    s = softmax(x)
    assert np.all(np.isfinite(s))
    np.testing.assert_allclose(s.sum(axis=1), 1.0)
    np.testing.assert_allclose(s[0, :2], [1 / (1 + np.exp(-1)), np.exp(-1) / (1 + np.exp(-1))])
    assert np.isfinite(cross_entropy(x, np.array([2, 0])))


def test_dataset_is_bit_identical_for_the_same_seed_and_differs_otherwise():
    a, b = make_classification(100, 8, 3, seed=7), make_classification(100, 8, 3, seed=7)
    assert a[0].tobytes() == b[0].tobytes() and a[1].tobytes() == b[1].tobytes()
    assert make_classification(100, 8, 3, seed=8)[0].tobytes() != a[0].tobytes()


@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_training_is_bit_identical_for_the_same_seeds(optimizer):
    def run() -> bytes:
        x, y = make_classification(256, 8, 3, seed=1)
        model = MLP((8, 16, 3), seed=2)
        lr = 1e-2 if optimizer == "adam" else 0.1
        train_mlp(model, x, y, epochs=2, batch_size=32, seed=3, optimizer=optimizer, lr=lr)
        return b"".join(p.tobytes() for p in model.params.values())

    assert run() == run()


def test_training_lowers_the_loss():
    x, y = make_classification(512, 8, 3, seed=1, separation=1.0)
    result = train_mlp(MLP((8, 32, 3), seed=2), x, y, epochs=5, batch_size=64, seed=3, lr=1e-2)
    assert result.epoch_losses[-1] < 0.7 * result.epoch_losses[0]


def test_optimizers_step_towards_lower_loss_on_a_quadratic():
    for make in (lambda p: SGD(p, lr=0.1, momentum=0.9), lambda p: Adam(p, lr=0.1)):
        params = {"w": np.array([3.0, -2.0])}
        opt = make(params)
        for _ in range(100):
            opt.step({"w": 2 * params["w"]})
        assert np.linalg.norm(params["w"]) < 0.1


def test_backend_env_selects_numpy_and_rejects_unknown(monkeypatch):
    monkeypatch.setenv("RTGOV_BACKEND", "numpy")
    assert kernels.get_xp() is np
    with pytest.raises(kernels.BackendError, match="expected 'numpy' or 'cupy'"):
        kernels.get_xp("torch")


def test_forcing_cupy_without_a_gpu_is_a_clear_error():
    try:
        import cupy  # noqa: F401

        pytest.skip("cupy is installed here; the error path needs a machine without it")
    except ImportError:
        pass
    with pytest.raises(kernels.BackendError, match="RTGOV_BACKEND=cupy was requested but cupy"):
        kernels.get_xp("cupy")
