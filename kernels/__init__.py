"""Reference ML workload kernels, written once against an array module ``xp``.

``xp`` is numpy or cupy; :func:`kernels.backend.get_xp` chooses. The kernels know
nothing of pytest or of pytest-rtgov: they are the code that gets measured.
``KERNELS_FAULT="<kernel>:<flat index>:<ulps>"`` is a test-only fault hook
(:mod:`kernels.faults`): it moves one element of that kernel's outputs by a few ULPs.
"""

from kernels import faults
from kernels.backend import BackendError, backend_name, get_xp
from kernels.data import make_classification
from kernels.layers import (
    cross_entropy,
    cross_entropy_backward,
    gelu,
    gelu_backward,
    layer_norm,
    layer_norm_backward,
    linear,
    linear_backward,
    relu,
    relu_backward,
    softmax,
    softmax_backward,
)
from kernels.mlp import MLP
from kernels.optim import SGD, Adam
from kernels.train import TrainResult, accuracy, train_mlp

faults.check_known()  # KERNELS_FAULT naming no public kernel fails here, at import

__all__ = [
    "MLP",
    "SGD",
    "Adam",
    "BackendError",
    "TrainResult",
    "accuracy",
    "backend_name",
    "cross_entropy",
    "cross_entropy_backward",
    "gelu",
    "gelu_backward",
    "get_xp",
    "layer_norm",
    "layer_norm_backward",
    "linear",
    "linear_backward",
    "make_classification",
    "relu",
    "relu_backward",
    "softmax",
    "softmax_backward",
    "train_mlp",
]
