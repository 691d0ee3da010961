#!/bin/bash
# Usage: bash benches/committed_check.sh [REPO] [OUT]   (a clone of REPO per session, under OUT)
# Done-when check: a +10% edit of each workload kernel, COMMITTED, gated as a pull-request
# job would with --rtgov-ab-ref at the commit before; quiet and beside a one-core hog.
set -u
SRC=${1:-$(git rev-parse --show-toplevel)}
OUT=${2:-/tmp/committed_check}
rm -rf $OUT && mkdir -p $OUT
for cond in quiet hog; do
  for group in "gelu layer_norm softmax" "linear cross_entropy" "mlp"; do
    d=$OUT/$cond-${group// /_}
    git clone -q $SRC $d
    (cd $d && $SRC/.venv/bin/python -c "
import sys; sys.path.insert(0, '$SRC/benches')
from pathlib import Path
import _gate_edits as e
e.apply(Path('.'), tuple('$group'.split()), '+10%')
" && git -c user.name=t -c user.email=t@x commit -qam "+10% $group")
    if [ $cond = hog ]; then python3 -c 'while True: pass' & HOG=$!; fi
    load=$(cut -d' ' -f1 /proc/loadavg)
    (cd $d && OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 timeout 600 $SRC/.venv/bin/python -m pytest tests/workload/test_kernel_perf.py --rtgov-gate --rtgov-ab-ref HEAD~1 --rtgov-dir $d/.st -p no:cacheprovider -q > $d.log 2>&1; echo "exit $?" >> $d.log)
    if [ $cond = hog ]; then kill $HOG; fi
    echo "== $cond [$group] load $load: $(tail -1 $d.log)"; grep -E "^BREACH" $d.log | sed 's/^/   /'
  done
done
