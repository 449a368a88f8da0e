#!/usr/bin/env bash
# GPU smoke test for a lent GPU machine: the GPU-marked tests, then `cleftscore bench speed` at 1024.
#
#   bash bench/gpu_smoke.sh                      # FFHQ 1024 architecture, random weights
#   SMOKE_CONFIG=t64 bash bench/gpu_smoke.sh     # tiny config (checks the script's logic on a CPU)
#
# Environment: PY (default python3), OUT (results folder; default bench/results), SMOKE_CONFIG
# (ffhq1024), SMOKE_BATCH (16), SMOKE_ADAPT_BATCH (8), SMOKE_STEPS (10), SMOKE_WARMUP (3),
# SMOKE_TEST_TIMEOUT / SMOKE_BENCH_TIMEOUT (seconds, 90 / 150; 240 / 480 with SMOKE_COMPILE=1,
# which also tests and times torch.compile: minutes of compiling more). Wheels in .whl/ (lpips,
# platformdirs) are installed into /tmp/site first when present. The benchmark runs through the
# CLI (`python -c` on src/, so no install is needed), which needs typer and rich importable.
# Expected wall time on an H100: about 2-2.5 minutes including CUDA start-up; each stage is
# bounded by `timeout`.
set -u -o pipefail
export PYTHONUNBUFFERED=1
cd "$(dirname "$0")/.."
PY=${PY:-python3}
CONFIG=${SMOKE_CONFIG:-ffhq1024}
OUTDIR=${OUT:-bench/results}
mkdir -p "$OUTDIR"
t_start=$(date +%s)

if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl || echo "WARN: wheel install failed"
    export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
fi

"$PY" - <<'PYEOF'
import torch
print(f"torch {torch.__version__}, CUDA available: {torch.cuda.is_available()}",
      f"({torch.cuda.get_device_name(0)})" if torch.cuda.is_available() else "(CPU only: GPU tests will skip)")
PYEOF

echo "== stage 1: GPU-marked tests =="
if [ -n "${SMOKE_COMPILE:-}" ]; then export CLEFTSCORE_GPU_COMPILE_TEST=1; fi
timeout "${SMOKE_TEST_TIMEOUT:-$([ -n "${SMOKE_COMPILE:-}" ] && echo 240 || echo 90)}" "$PY" -m pytest -m gpu tests/test_gpu.py tests/test_networks.py \
    -q -p no:cacheprovider -rs 2>&1 | tee "$OUTDIR/gpu_tests.log"
tests_rc=$?
echo "tests rc=$tests_rc ($(( $(date +%s) - t_start )) s so far)"

echo "== stage 2: speed benchmark ($CONFIG) =="
dev_tag=$("$PY" -c "import torch; print('cuda' if torch.cuda.is_available() else 'cpu')")
json="$OUTDIR/speed_${CONFIG}_${dev_tag}.json"
timeout "${SMOKE_BENCH_TIMEOUT:-$([ -n "${SMOKE_COMPILE:-}" ] && echo 480 || echo 150)}" \
    "$PY" -c 'from cleftscore.cli import main; main()' bench speed --config "$CONFIG" --device "$dev_tag" \
    --batch "${SMOKE_BATCH:-16}" --adapt-batch "${SMOKE_ADAPT_BATCH:-8}" \
    --steps "${SMOKE_STEPS:-10}" --warmup "${SMOKE_WARMUP:-3}" \
    --adapt-engine vmap --adapt-engine loop --eager-too --unfused-too --channels-last --profile ${SMOKE_COMPILE:+--compile} --out "$json" 2>&1 | tee "$OUTDIR/speed_${CONFIG}_${dev_tag}.log"
bench_rc=$?

echo "== done in $(( $(date +%s) - t_start )) s: tests rc=$tests_rc, benchmark rc=$bench_rc, JSON: $json =="
[ "$tests_rc" -eq 0 ] && [ "$bench_rc" -eq 0 ]
