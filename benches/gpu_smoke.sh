#!/usr/bin/env bash
# Prove the cupy path on a machine with an NVIDIA GPU and cupy installed:
# kernels' own tests on cupy, then the workload recorded with --rtgov (plain and
# under -n 2), then the GPU fields of every entry of the run record.
# Usage: bash benches/gpu_smoke.sh [OUTDIR]   (copies the run records into OUTDIR)
set -uo pipefail
out=${1:-.rtgov/gpu-smoke}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1 RTGOV_BACKEND=cupy
py=${PYTHON:-python3}
# Load the plugin by module name when it is not installed (no pytest11 entry point).
plug=()
$py -c "import importlib.metadata as m, sys; sys.exit(any(e.name == 'rtgov' for e in m.entry_points(group='pytest11')))" && plug=(-p pytest_rtgov.plugin)
nvidia-smi -L || true
$py -c "import cupy, numpy; print('cupy', cupy.__version__, 'numpy', numpy.__version__)"
$py -c "from kernels.backend import get_xp; print('backend', get_xp().__name__)"
$py -m pytest "${plug[@]}" -p no:cacheprovider tests/kernels -q 2>&1 | tail -3
for n in 0 2; do
  $py -m pytest "${plug[@]}" -p no:cacheprovider tests/workload --rtgov \
    --rtgov-dir ".rtgov-gpu-n$n" -n $n -q 2>&1 | tail -4
  cp ".rtgov-gpu-n$n/runs/$(cat .rtgov-gpu-n$n/latest).json" "$out/run-n$n.json"
done
$py - "$out" <<'PY'
import json, sys, pathlib
for path in sorted(pathlib.Path(sys.argv[1]).glob("run-n*.json")):
    rec = json.loads(path.read_text())
    env = rec.get("environment", {})
    print(path.name, "backend", rec.get("backend"), "gpu", env.get("gpu"),
          "SMs", env.get("gpu_sm_count"), "CUDA runtime", env.get("cuda_runtime"),
          "driver", env.get("cuda_driver"), "cupy", env.get("cupy"))
    rows = [(t["nodeid"], "call", t["samples"]) for t in rec["tests"]]
    rows += [(f["name"] + "@" + str(st.get("worker")), "setup", [st["sample"]]) for f in rec["fixtures"] for st in f["setups"]]
    for name, kind, samples in rows:
        gpu = [s.get("gpu_time_ns") for s in samples if not s.get("warmup")]
        mem = [s.get("gpu_memory_bytes") for s in samples if not s.get("warmup")]
        print(f"  {kind:5} {name[:70]:70} gpu_ns={gpu[:3]} gpu_mem={mem[:3]}")
PY
# The ledger and the signed artifacts (the model checkpoint copied from the GPU).
for n in 0 2; do
  ls ".rtgov-gpu-n$n"/artifacts/*/*/ 2>/dev/null
  $py -c "import sys; from pytest_rtgov.cli import main; sys.exit(main(['--dir', '.rtgov-gpu-n$n', 'verify', '--gates', 'none.toml']))"
  echo "rtgov verify (n=$n): exit $?"
done
