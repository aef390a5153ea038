#!/usr/bin/env bash
# One prepared CUDA check of training, DP training, the attack and a sweep (run on a GPU machine).
# Usage: OUT=/some/folder bash benchmarks/device_check.sh   (wheels for missing packages in .wheels/)
# Every step is logged to $OUT/check.log; a failing step is recorded and the next one still runs.
set -u
OUT=${OUT:-/tmp/device-check}
WORK=${WORK:-/tmp/device-check-runs}  # run folders stay here; only the log and tables go to $OUT
mkdir -p "$OUT" "$WORK"
LOG="$OUT/check.log"
PY=${PY:-python3}
step() {  # step NAME SECONDS COMMAND...
    local name=$1 limit=$2; shift 2
    echo "=== $name" | tee -a "$LOG"
    local t0=$SECONDS
    timeout "$limit" "$@" >>"$LOG" 2>&1
    echo "=== $name: exit $? in $((SECONDS - t0)) s" | tee -a "$LOG"
}
if ls .wheels/*.whl >/dev/null 2>&1; then
    step install-wheels 120 $PY -m pip install --no-deps --no-index .wheels/*.whl
fi
export FEDDP_EVAL_CACHE=${FEDDP_EVAL_CACHE:-$PWD/.wheels/cache}
step install 120 $PY -m pip install --no-deps --no-build-isolation -e .
step versions 60 $PY -c "import torch, opacus; print(torch.__version__, torch.version.cuda, torch.cuda.get_device_name(0), 'opacus', opacus.__version__)"
step train-cuda 300 $PY -m feddp_eval.cli train --device cuda --rounds 10 --out "$WORK/train-cuda" --json
step train-cpu 300 $PY -m feddp_eval.cli train --device cpu --rounds 10 --out "$WORK/train-cpu" --json
step attack-cuda 300 $PY -m feddp_eval.cli attack --noise 1.1 --device cuda --out "$WORK" --json --quiet
# The malicious server: Opacus on the imprinted model on CUDA, and exact tiles from the capture.
step imprint-cuda 300 $PY -m feddp_eval.cli attack --attack imprint --noise 1.1 --device cuda \
    --out "$WORK/imprint" --json --quiet
step sweep-cuda 300 $PY -m feddp_eval.cli sweep --device cuda --noise 0.01,1.1 --defense dp-sgd,local-dp --rounds 2 \
    --iterations 200 --jobs 2 --out "$WORK/sweep" --json --quiet
step attack-cost 300 $PY benchmarks/attack_cost.py --device cuda --repeats 1
step dp-cost 300 $PY benchmarks/dp_cost.py --device cuda --repeats 2
cp "$WORK/sweep/results.csv" "$OUT/sweep-results.csv" 2>/dev/null
cp "$WORK"/attack-*/results.json "$OUT/attack-results.json" 2>/dev/null
cp "$WORK"/imprint/attack-*/results.json "$OUT/imprint-results.json" 2>/dev/null
true
