#!/usr/bin/env bash
# One-shot GPU check of the splatting CUDA backend (run on the GPU machine, repo root as cwd):
# builds the extension (timed), runs the CUDA tests, runs the benchmark; everything goes to $OUT
# (log, pytest.txt, bench.txt, bench.json). Bounded to < 6 minutes by per-step timeouts.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/gaussiantoken_gpu_check}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1
# the repo root is the package `gaussiantoken`: make it importable without installing
mkdir -p /tmp/gt_pkg && ln -sfn "$PWD" /tmp/gt_pkg/gaussiantoken
export PYTHONPATH="/tmp/gt_pkg${PYTHONPATH:+:$PYTHONPATH}"
status=0
exec > >(tee "$OUT/log") 2>&1
echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version --format=csv,noheader 2>/dev/null)"
DEV_ARCH="$($PYTHON -c 'import torch; print("%d.%d" % torch.cuda.get_device_capability())')"
if [ "$DEV_ARCH" = "9.0" ]; then export TORCH_CUDA_ARCH_LIST="9.0+PTX"; else export TORCH_CUDA_ARCH_LIST="$DEV_ARCH;9.0+PTX"; fi
echo "TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"
$PYTHON -c 'import torch, sys; print("torch", torch.__version__, "cuda", torch.version.cuda, "python", sys.version.split()[0])'
SECONDS=0
timeout 240 $PYTHON -c '
from gaussiantoken.tokenizer.render.cuda import cuda_status
st = cuda_status()
print("cuda_status:", st)
raise SystemExit(0 if st.available else 1)' || { echo "BUILD FAILED"; status=1; }
echo "build time: ${SECONDS} s"
if [ $status -eq 0 ]; then
  timeout 150 $PYTHON -m pytest -m cuda ${GPU_CHECK_TESTS:-tests/tokenizer} -q -p no:cacheprovider 2>&1 | tee "$OUT/pytest.txt" || status=1
  timeout 150 $PYTHON bench/splat.py --device cuda --json "$OUT/bench.json" 2>&1 | tee "$OUT/bench.txt" || status=1
fi
echo "gpu_check exit status: $status"
exit $status
