#!/usr/bin/env bash
# The stage cache on the cupy path, on a machine with an NVIDIA GPU and cupy installed:
# the four-stage workload cold (every stage stored) then warm (every stage a hit, its
# arrays restored to the GPU), then every stage re-executed and compared with its entry
# (--rtgov-stage-recheck all: a GPU kernel that is not deterministic shows as a finding),
# then a cold session under -n 2 (each stage computed once, the other worker hits), and
# `rtgov verify` over each state directory.
# Usage: bash benches/gpu_stages.sh [OUTDIR]     (BACKEND=numpy runs it without a GPU)
set -uo pipefail
out=${1:-.rtgov/gpu-stages}
mkdir -p "$out"
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
export RTGOV_BACKEND=${BACKEND:-cupy} OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
py=${PYTHON:-python3}
plug=()
$py -c "import importlib.metadata as m, sys; sys.exit(any(e.name == 'rtgov' for e in m.entry_points(group='pytest11')))" && plug=(-p pytest_rtgov.plugin)
nvidia-smi -L 2>/dev/null || echo "no nvidia-smi"
$py -c "from kernels.backend import get_xp; print('backend', get_xp().__name__)"
run() {  # run NAME DIR ARGS...: one session, its record copied to $out/NAME.json
  local name=$1 dir=$2; shift 2
  $py -m pytest "${plug[@]}" -p no:cacheprovider tests/workload --rtgov --rtgov-dir "$dir" -q "$@" 2>&1 | tail -4
  echo "$name: exit ${PIPESTATUS[0]}"
  cp "$dir/runs/$(cat "$dir/latest").json" "$out/$name.json"
}
rm -rf .rtgov-gpu-stages .rtgov-gpu-stages-n2
run cold .rtgov-gpu-stages
run warm .rtgov-gpu-stages
run recheck .rtgov-gpu-stages --rtgov-stage-recheck all
run cold-n2 .rtgov-gpu-stages-n2 -n 2
for dir in .rtgov-gpu-stages .rtgov-gpu-stages-n2; do
  $py -c "import sys; from pytest_rtgov.cli import main; sys.exit(main(['--dir', '$dir', 'verify', '--gates', 'none.toml']))" 2>&1 | tail -3
  echo "rtgov verify $dir: exit $?"
done
$py - "$out" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
outputs = {}
for name in ("cold", "warm", "recheck", "cold-n2"):
    path = out / f"{name}.json"
    if not path.exists():
        print(name, "no record"); continue
    rec = json.loads(path.read_text())
    print(f"{name}: backend {rec['backend']} gpu {rec['environment'].get('gpu')} exit {rec['exit_status']}")
    for f in rec["fixtures"]:
        for s in f["setups"]:
            ev = s.get("stage")
            if not ev:
                continue
            outputs.setdefault(f["name"], set()).add(json.dumps(ev.get("outputs"), sort_keys=True))
            print(f"  {f['name']:9} {s['worker']:5} {ev['outcome']:8} key {ev['key'][:12]} "
                  f"setup {s['sample']['wall_ns'] / 1e6:9.1f} ms gpu {s['sample'].get('gpu_time_ns')} "
                  f"{ev.get('reason', '')} {ev.get('finding', '')}")
for stage, seen in sorted(outputs.items()):
    print(f"{stage}: {len(seen)} distinct output digest set(s) across the sessions")
PY
