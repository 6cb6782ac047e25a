#!/usr/bin/env bash
# The tests in one command: set up (or reuse) the environment, then run the suite (CPU).
#   bash scripts/test.sh [pytest arguments, e.g. -x tests/lm]
# CI (.ci/run) runs exactly this.
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$GT_ROOT"
exec python -m pytest -q "$@"
