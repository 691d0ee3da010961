"""The reference workload: training in four stages, validation as tests.

This is the product's core idea dogfooded: ``make gate`` runs these tests with
``--rtgov-gate``. Training is four ``@stage`` fixtures, each cached under a key of its
code, params, seeds, environment and inputs, and signed (docs/stages.md):

    dataset -> pretrain -> finetune -> evaluate

``dataset`` draws the data; ``pretrain`` trains the MLP from its seeded initialisation;
``finetune`` continues from those weights on a second schedule (a lower learning rate, a
new shuffle); ``evaluate`` scores the fine-tuned model on the validation split and
exports it, signed (its entry is the exported model; ``trained_model`` also saves it as
this session's signed artifact). A second ``make gate`` with nothing changed serves all
four from the cache: the metrics they recorded come back from their sealed entries, so
the gates judge the same values.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from kernels import MLP, accuracy, cross_entropy, get_xp, make_classification, train_mlp
from pytest_rtgov import stage

# BLAS thread counts change the weights' rounding: the training stages declare them.
THREADS = ["OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"]
DATA = {"n_train": 6000, "n_val": 2000, "features": 32, "classes": 5, "separation": 0.7}
MODEL = {"hidden": [128, 128]}
PRETRAIN = {"epochs": 8, "batch": 128, "lr": 1e-3}
FINETUNE = {"epochs": 2, "batch": 128, "lr": 3e-4}


@pytest.fixture(scope="session")
def xp():
    return get_xp()


@pytest.fixture(scope="module")
def arrays(xp):
    """The kernel tests' inputs (test_kernel_perf.py, test_kernel_outputs.py), seeded."""
    rng = np.random.Generator(np.random.PCG64(42))
    return {
        "x": xp.asarray(rng.standard_normal((512, 256), dtype=np.float32)),
        "w": xp.asarray(rng.standard_normal((256, 256), dtype=np.float32)),
        "b": xp.asarray(rng.standard_normal(256, dtype=np.float32)),
        "logits": xp.asarray(rng.standard_normal((1000, 100), dtype=np.float32) * 10),
        "labels": xp.asarray(rng.integers(0, 100, size=1000)),
    }


def sizes() -> tuple[int, ...]:
    return (DATA["features"], *MODEL["hidden"], DATA["classes"])


def model_from(arrays: Any, xp: Any, *, seed: int) -> MLP:
    """An MLP holding a copy of the weights a stage produced (training updates its
    parameters in place: without the copy it would change the upstream stage's value,
    which the stage cache reports as an input that moved while the stage ran)."""
    model = MLP(sizes(), seed=seed, xp=xp)
    model.params = {name: xp.array(arrays[name], copy=True) for name in model.params}
    return model


def train(model: MLP, dataset: Any, params: Any, seeds: Any, on_epoch: Any = None) -> Any:
    """One training schedule (``params``: epochs, batch, lr; ``seeds``: shuffle) on the
    training split; ``on_epoch(loss=...)`` after each epoch."""
    return train_mlp(
        model,
        dataset["x_train"],
        dataset["y_train"],
        epochs=params["epochs"],
        batch_size=params["batch"],
        seed=seeds["shuffle"],
        lr=params["lr"],
        on_epoch=None if on_epoch is None else lambda _, loss: on_epoch(loss=f"{loss:.4f}"),
    )


@stage(params=DATA, seeds={"data": 20261122})
def dataset(xp, params, seeds, rtgov):
    """Prepare the data set: one seeded draw, split into training and validation."""
    n_train = params["n_train"]
    x, y = make_classification(
        n_train + params["n_val"],
        params["features"],
        params["classes"],
        seed=seeds["data"],
        separation=params["separation"],
    )
    rtgov.record("data_seed", seeds["data"], unit="seed")
    rtgov.record_digest("dataset_digest", np.concatenate([x.ravel(), y.astype(np.float32)]))
    return {
        "x_train": xp.asarray(x[:n_train]),
        "y_train": xp.asarray(y[:n_train]),
        "x_val": xp.asarray(x[n_train:]),
        "y_val": xp.asarray(y[n_train:]),
    }


@stage(params={**MODEL, **PRETRAIN}, seeds={"init": 7, "shuffle": 11}, env=THREADS)
def pretrain(xp, dataset, params, seeds, rtgov):
    """Pretrain the MLP from its seeded initialisation."""
    model = MLP(sizes(), seed=seeds["init"], xp=xp)
    with rtgov.progress("pretraining the MLP", total=params["epochs"]) as bar:
        result = train(model, dataset, params, seeds, on_epoch=bar.advance)
    rtgov.record("train_loss", result.epoch_losses[-1], higher_is_better=False)
    rtgov.record("epochs", params["epochs"], unit="epochs")
    return dict(model.params), {"epoch_losses": result.epoch_losses}


@stage(params=FINETUNE, seeds={"shuffle": 13}, env=THREADS)
def finetune(xp, dataset, pretrain, params, seeds, rtgov):
    """Fine-tune: the pretrained weights, a second schedule (lower rate, new order)."""
    model = model_from(pretrain, xp, seed=0)
    result = train(model, dataset, params, seeds)
    rtgov.record("finetune_loss", result.epoch_losses[-1], higher_is_better=False)
    weights = xp.concatenate([p.ravel() for p in model.params.values()])
    rtgov.record_digest("weights_digest", weights)
    return dict(model.params), {"epoch_losses": result.epoch_losses}


@stage(env=THREADS)
def evaluate(xp, dataset, finetune, rtgov):
    """Evaluate the fine-tuned model on the validation split, and export it: this
    stage's signed entry holds the model's weights with its validation predictions."""
    model = model_from(finetune, xp, seed=0)
    logits, _ = model.forward(dataset["x_val"])
    rtgov.record("eval_accuracy", accuracy(model, dataset["x_val"], dataset["y_val"]))
    rtgov.record("eval_loss", cross_entropy(logits, dataset["y_val"]), higher_is_better=False)
    predictions = logits.argmax(axis=1)
    return {**model.params, "val_predictions": predictions}, {"sizes": list(sizes())}


@pytest.fixture(scope="session")
def trained_model(xp, evaluate, rtgov) -> MLP:
    """The exported model, as an MLP; saved as this session's signed artifact too."""
    model = model_from(evaluate, xp, seed=0)
    # The model checkpoint, signed by the session's key (a no-op without --rtgov).
    rtgov.save_artifact("mlp", model.host_params())
    return model
