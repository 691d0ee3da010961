"""What a fixture's measured region holds: the fixture's own work, not the plugin's.

The first ``rtgov.save_artifact`` of a session used to load the signing key and import
cryptography inside the saving fixture's region: +1.2 MB of peak memory (and the import's
time) in record sessions and in xdist workers, not in a gated controller, which had
loaded its keys before; the reference workload's training-memory gate then breached
(+78%) under ``-n 2`` against a baseline recorded without it."""

from __future__ import annotations

import json

import pytest

SUITE = """
import numpy as np
import pytest

@pytest.fixture(scope="session")
def model(rtgov):
    weights = np.arange(16, dtype=np.float32)
    rtgov.save_artifact("model", {"weights": weights})
    return weights

def test_uses(model):
    assert model.sum() == 120
"""


GATES = """
[defaults]
baseline = "baseline"

[[gates]]
name = "model memory"
metric = "peak_memory"
fixtures = ["model"]
max = "64 MiB"
"""


def _peaks(pytester) -> list[int]:
    base = pytester.path / ".rtgov"
    run = (base / "latest").read_text().strip()
    record = json.loads((base / "runs" / f"{run}.json").read_text())
    (fixture,) = [f for f in record["fixtures"] if f["name"] == "model"]
    return [setup["sample"]["peak_memory_bytes"] for setup in fixture["setups"]]


@pytest.mark.parametrize("args", [["--rtgov"], ["--rtgov-gate"], ["--rtgov", "-n", "2"]])
def test_saving_an_artifact_does_not_measure_the_plugins_imports(pytester, args):
    pytester.makepyfile(test_model=SUITE)
    pytester.makefile(".toml", gates=GATES)
    result = pytester.runpytest_subprocess(*args, "--rtgov-memory", "tracemalloc")
    assert result.ret == 0
    for peak in _peaks(pytester):
        # the npz of 64 bytes, its seal and digests: ~100 KiB; the import was ~1.2 MB and
        # a 1 MiB read buffer in the file digest another 1 MiB
        assert 0 < peak < 400_000
