#!/usr/bin/env bash
# One-shot GPU check (run on the GPU machine, repo root as cwd), bounded to < 7 minutes in all:
#   1. build the splatting CUDA extension (timed)            -> log
#   2. pytest -m cuda over tests/tokenizer (the splat tests)   -> pytest.txt
#   3. the splat benchmark (both backward variants)          -> bench.txt, bench.json
#      then pytest -m cuda over the other packages' tests     -> pytest_others.txt
#   4. bench/tokenizer_throughput.py --device cuda            (if the script exists)
#   5. bench/train_lm.py --device cuda --config configs/lm/gpu_400m.yaml (if it exists; when deepspeed
#      does not import, the wheels in .whl/ are installed first: pip install --no-index --no-deps)
#   6. bench/generate.py --device cuda                        (if it exists)
# Each step runs under its own timeout, capped by what is left of the global budget; a failing step
# does not stop the others. Everything is teed to $OUT/log; a summary table ends the log.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gaussiantoken_gpu_check}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
BUDGET_S="${GPU_CHECK_BUDGET_S:-400}"  # whole script, seconds (< 7 minutes)
export PYTHONUNBUFFERED=1
# the repo root is the package `gaussiantoken`: make it importable without installing
mkdir -p /tmp/gt_pkg && ln -sfn "$PWD" /tmp/gt_pkg/gaussiantoken
export PYTHONPATH="/tmp/gt_pkg${PYTHONPATH:+:$PYTHONPATH}"
exec > >(tee "$OUT/log") 2>&1
START=$SECONDS
status=0
SUMMARY=()

# run_step NAME TIMEOUT_S OUTFILE CMD...: runs CMD under min(TIMEOUT_S, budget left), tees to OUTFILE
run_step() {
  local name="$1" limit="$2" outfile="$3"
  shift 3
  local left=$((BUDGET_S - (SECONDS - START)))
  if [ "$left" -lt 15 ]; then
    SUMMARY+=("$(printf '%-22s %-9s %6s' "$name" "SKIPPED" "-") (no time left)")
    status=1
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  echo "== $name (timeout ${limit} s): $*"
  local t0=$SECONDS rc
  timeout "$limit" "$@" 2>&1 | tee "$outfile"
  rc=${PIPESTATUS[0]}
  local word="ok"
  if [ "$rc" -eq 5 ] && [ "${name#pytest}" != "$name" ]; then rc=0; word="no tests"; fi  # all deselected
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then word="TIMEOUT"; elif [ "$rc" -ne 0 ]; then word="FAIL($rc)"; fi
  [ "$rc" -ne 0 ] && status=1
  SUMMARY+=("$(printf '%-22s %-9s %6s' "$name" "$word" "$((SECONDS - t0))")")
}

skip_step() {
  SUMMARY+=("$(printf '%-22s %-9s %6s' "$1" "absent" "-") ($2)")
}

echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
DEV_ARCH="$($PYTHON -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
if [ "$DEV_ARCH" = "9.0" ]; then export TORCH_CUDA_ARCH_LIST="9.0+PTX"; else export TORCH_CUDA_ARCH_LIST="$DEV_ARCH;9.0+PTX"; fi
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
$PYTHON -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])'

run_step "build extension" 180 "$OUT/build.txt" $PYTHON -c '
from gaussiantoken.tokenizer.render.cuda import cuda_status
st = cuda_status()
print("cuda_status:", st)
raise SystemExit(0 if st.available else 1)'

run_step "pytest cuda tokenizer" 130 "$OUT/pytest.txt" \
  $PYTHON -m pytest -m cuda ${GPU_CHECK_TESTS:-tests/tokenizer} -q -p no:cacheprovider
run_step "bench splat" 100 "$OUT/bench.txt" $PYTHON bench/splat.py --device cuda --json "$OUT/bench.json"
run_step "pytest cuda others" 90 "$OUT/pytest_others.txt" \
  $PYTHON -m pytest -m cuda tests --ignore=tests/tokenizer -q -p no:cacheprovider

if [ -f bench/tokenizer_throughput.py ]; then
  run_step "tokenizer throughput" 45 "$OUT/tokenizer_throughput.txt" $PYTHON bench/tokenizer_throughput.py --device cuda
else
  skip_step "tokenizer throughput" "bench/tokenizer_throughput.py"
fi

if [ -f bench/train_lm.py ]; then
  if compgen -G ".whl/*.whl" >/dev/null && ! $PYTHON -c "import deepspeed" >/dev/null 2>&1; then
    run_step "pip install .whl" 60 "$OUT/pip.txt" $PYTHON -m pip install --no-index --no-deps .whl/*.whl
  fi
  run_step "train_lm gpu_400m" 75 "$OUT/train_lm.txt" \
    $PYTHON bench/train_lm.py --device cuda --config configs/lm/gpu_400m.yaml
else
  skip_step "train_lm gpu_400m" "bench/train_lm.py"
fi

if [ -f bench/generate.py ]; then
  run_step "generate" 45 "$OUT/generate.txt" $PYTHON bench/generate.py --device cuda
else
  skip_step "generate" "bench/generate.py"
fi

echo
echo "== summary ($((SECONDS - START)) s of a ${BUDGET_S} s budget)"
printf '%-22s %-9s %6s\n' "step" "result" "sec"
for line in "${SUMMARY[@]}"; do echo "$line"; done
echo "gpu_check exit status: $status"
exit $status
