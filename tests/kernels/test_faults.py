"""The test-only fault hook (kernels/faults.py): exact ULP moves, and no cost when unset."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

import kernels
from kernels import faults, gelu, layer_norm
from kernels.faults import Fault, inject, parse_fault


def _x():
    return np.random.default_rng(5).standard_normal((64, 32)).astype(np.float32)


@pytest.mark.parametrize("ulps", [1, 3])
def test_the_element_moves_exactly_that_many_ulps_towards_inf(ulps):
    x = _x()
    clean = gelu(x)
    faulted = inject(gelu, Fault("gelu", 1234, ulps))(x)
    assert faulted.dtype == clean.dtype == np.float32
    distance = np.testing.assert_array_max_ulp(clean, faulted, maxulp=ulps)
    flat = distance.ravel()
    assert flat[1234] == ulps
    assert np.count_nonzero(flat) == 1  # no other element moved
    assert faulted.ravel()[1234] > clean.ravel()[1234]  # towards +inf
    with pytest.raises(AssertionError):
        np.testing.assert_array_max_ulp(clean, faulted, maxulp=ulps - 1)


def test_every_float_output_of_a_tuple_moves_and_short_or_integer_ones_do_not():
    x = _x()
    gamma, beta = np.ones(32, np.float32), np.zeros(32, np.float32)
    (out, (x_hat, inv_std)) = layer_norm(x, gamma, beta)
    moved, (moved_hat, moved_inv) = inject(layer_norm, Fault("layer_norm", 100, 1))(
        x, gamma, beta
    )
    assert np.testing.assert_array_max_ulp(out, moved, 1).ravel()[100] == 1
    assert np.testing.assert_array_max_ulp(x_hat, moved_hat, 1).ravel()[100] == 1
    np.testing.assert_array_equal(inv_std, moved_inv)  # 64 elements: no index 100
    ints = inject(lambda: np.arange(5), Fault("x", 1, 1))()
    np.testing.assert_array_equal(ints, np.arange(5))


def test_unset_the_kernels_are_the_functions_themselves():
    assert faults.FAULT is None  # the suite runs without KERNELS_FAULT
    assert kernels.gelu is kernels.layers.gelu
    assert not hasattr(kernels.gelu, "__wrapped__")
    assert parse_fault("") is None and parse_fault(None) is None


@pytest.mark.parametrize("text", ["gelu", "gelu:x:1", "gelu:1:0", ":1:1", "gelu:1:1:1", "g:-1:1"])
def test_a_malformed_fault_is_refused_with_the_expected_form(text):
    with pytest.raises(ValueError, match=r"expected <kernel>:<flat index>:<ulps>"):
        parse_fault(text)


def _python(code, fault):
    env = {**os.environ, "KERNELS_FAULT": fault}
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False
    )


def test_the_variable_read_at_import_faults_the_named_kernel_wherever_it_is_called():
    code = (
        "import numpy as np, kernels\n"
        "from kernels.mlp import gelu as used_by_the_model\n"
        "x = np.linspace(-2, 2, 50, dtype=np.float32)\n"
        "d = np.testing.assert_array_max_ulp(kernels.layers.gelu.__wrapped__(x),"
        " used_by_the_model(x), 2)\n"
        "print(kernels.faults.FAULT, int(d.ravel()[7]), np.count_nonzero(d),"
        " kernels.relu is kernels.layers.relu)\n"
    )
    result = _python(code, "gelu:7:2")
    assert result.returncode == 0, result.stderr
    fault, moved, changed, relu_plain = result.stdout.rsplit(maxsplit=3)
    assert (fault, moved, changed, relu_plain) == ("Fault(kernel='gelu', index=7, ulps=2)",
                                                   "2", "1", "True")  # fmt: skip
    unknown = _python("import kernels", "gelo:1:1")
    assert unknown.returncode != 0
    assert "KERNELS_FAULT: no public kernel named 'gelo'" in unknown.stderr
