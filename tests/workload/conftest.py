"""The reference workload: training as a session fixture, validation as tests.

This is the product's core idea dogfooded: ``make gate`` runs these tests with
``--rtgov-gate``; the training fixture's setup is measured like any test, and
the metrics it and the validation tests record are what ML gates compare.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest

from kernels import MLP, get_xp, make_classification, train_mlp

DATA_SEED, INIT_SEED, SHUFFLE_SEED = 20261122, 7, 11
N_TRAIN, N_VAL, N_FEATURES, N_CLASSES = 6000, 2000, 32, 5
HIDDEN = (128, 128)
EPOCHS, BATCH, LR = 8, 128, 1e-3


@dataclass(frozen=True)
class Split:
    x: Any
    y: Any


@dataclass(frozen=True)
class Dataset:
    train: Split
    val: Split


@pytest.fixture(scope="session")
def xp():
    return get_xp()


@pytest.fixture(scope="session")
def dataset(xp, rtgov) -> Dataset:
    x, y = make_classification(
        N_TRAIN + N_VAL, N_FEATURES, N_CLASSES, seed=DATA_SEED, separation=0.7
    )
    rtgov.record("data_seed", DATA_SEED, unit="seed")
    rtgov.record_digest("dataset_digest", np.concatenate([x.ravel(), y.astype(np.float32)]))
    return Dataset(
        train=Split(xp.asarray(x[:N_TRAIN]), xp.asarray(y[:N_TRAIN])),
        val=Split(xp.asarray(x[N_TRAIN:]), xp.asarray(y[N_TRAIN:])),
    )


@pytest.fixture(scope="session")
def trained_model(xp, dataset, rtgov) -> MLP:
    """Train the MLP once per session (once per worker under xdist)."""
    model = MLP((N_FEATURES, *HIDDEN, N_CLASSES), seed=INIT_SEED, xp=xp)
    with rtgov.progress("training the MLP", total=EPOCHS) as bar:
        result = train_mlp(
            model,
            dataset.train.x,
            dataset.train.y,
            epochs=EPOCHS,
            batch_size=BATCH,
            seed=SHUFFLE_SEED,
            lr=LR,
            on_epoch=lambda epoch, loss: bar.advance(loss=f"{loss:.4f}"),
        )
    rtgov.record("train_loss", result.epoch_losses[-1], higher_is_better=False)
    rtgov.record("epochs", EPOCHS, unit="epochs")
    rtgov.record_digest(
        "weights_digest", xp.concatenate([p.ravel() for p in model.params.values()])
    )
    # The model checkpoint, signed by the session's key (a no-op without --rtgov).
    rtgov.save_artifact("mlp", model.host_params())
    return model
