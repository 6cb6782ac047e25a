# Create or reuse the project's virtual environment and install what is missing (sourced by demo.sh/test.sh).
#
#   GT_VENV=DIR            where the environment lives (default: .venv in the repository)
#   GT_PYTHON=python3      the interpreter that creates it (>= 3.10)
#   GT_SYSTEM_SITE=1       let the venv see the interpreter's installed packages (default 1: what the machine
#                          already has is reused, only what is missing is installed; 0 = a self-contained venv)
#
# Order matters: the CPU torch wheel first (`pip install torch==2.13.0`; a plain `torch` requirement
# would pull the CUDA build), then the package itself, editable, with its test extras. The install is
# redone only when pyproject.toml changes (a stamp in the venv) or the package does not import from
# this checkout.
set -euo pipefail
GT_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
GT_VENV="${GT_VENV:-$GT_ROOT/.venv}"
GT_PYTHON="${GT_PYTHON:-python3}"
GT_SYSTEM_SITE="${GT_SYSTEM_SITE:-1}"
export PIP_DISABLE_PIP_VERSION_CHECK=1

if [ ! -x "$GT_VENV/bin/python" ]; then
  echo "[env] creating the virtual environment $GT_VENV" >&2
  flags=()
  [ "$GT_SYSTEM_SITE" = "1" ] && flags+=(--system-site-packages)
  "$GT_PYTHON" -m venv "${flags[@]}" "$GT_VENV"
fi
GT_VENV_PY="$GT_VENV/bin/python"
stamp="$GT_VENV/.gaussiantoken-installed"
want="$(cd "$GT_ROOT" && "$GT_VENV_PY" -c 'import hashlib,sys; print(hashlib.sha256(open("pyproject.toml","rb").read()).hexdigest())')"
here_ok() {  # the package imports from this checkout
  (cd / && "$GT_VENV_PY" - "$GT_ROOT" <<'PY' >/dev/null 2>&1
import os, sys, importlib.util
spec = importlib.util.find_spec("gaussiantoken")
sys.exit(0 if spec and spec.origin and os.path.samefile(os.path.dirname(spec.origin), sys.argv[1]) else 1)
PY
  )
}
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ] || ! here_ok; then
  echo "[env] installing into $GT_VENV (CPU torch wheel first, then gaussiantoken[test], editable)" >&2
  "$GT_VENV_PY" -m pip install -q "torch==2.13.0"
  "$GT_VENV_PY" -m pip install -q -e "$GT_ROOT[test]"
  here_ok || { echo "[env] error: gaussiantoken does not import from $GT_ROOT after the install" >&2; exit 1; }
  echo "$want" > "$stamp"
fi
export PATH="$GT_VENV/bin:$PATH"
