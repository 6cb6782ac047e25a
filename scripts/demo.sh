#!/usr/bin/env bash
# The main job in one command: set up (or reuse) the environment, then run the demo.
#   bash scripts/demo.sh [gaussiantoken demo arguments, e.g. --quick or --out DIR]
set -euo pipefail
source "$(dirname "$0")/env.sh"
cd "$GT_ROOT"
exec gaussiantoken demo "$@"
