"""Validation of the trained model: loss, accuracy and output digests, recorded."""

from __future__ import annotations

import numpy as np
import pytest

from kernels import accuracy, cross_entropy


def test_val_accuracy(trained_model, dataset, rtgov):
    acc = accuracy(trained_model, dataset["x_val"], dataset["y_val"])
    rtgov.record("val_accuracy", acc, higher_is_better=True)
    assert acc >= 0.90


def test_val_loss(trained_model, dataset, rtgov):
    logits, _ = trained_model.forward(dataset["x_val"])
    rtgov.checkpoint("val_logits", logits, keep=True)  # a replay shows it element by element
    loss = cross_entropy(logits, dataset["y_val"])
    rtgov.record("val_loss", loss, higher_is_better=False)
    assert loss < 0.5


def test_predictions_are_deterministic(trained_model, dataset, rtgov):
    first = trained_model.predict(dataset["x_val"])
    second = trained_model.predict(dataset["x_val"])
    rtgov.record_digest("val_predictions", first)
    assert (first == second).all()


def test_every_class_is_predicted(trained_model, dataset):
    predicted = set(int(c) for c in trained_model.predict(dataset["x_val"]).tolist())
    assert predicted == set(range(int(dataset["y_val"].max()) + 1))


def test_checkpoint_round_trip(trained_model, rtgov):
    """The saved checkpoint loads only after its signature verifies, and is the model."""
    if not rtgov.active:
        pytest.skip("artifacts are signed and verified only with --rtgov or --rtgov-gate")
    loaded = rtgov.load_artifact("mlp")
    expected = trained_model.host_params()
    assert sorted(loaded) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(loaded[name], value)
