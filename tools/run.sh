#!/usr/bin/env bash
# The two quick-start commands. Each installs whatever is missing first (tools/install.sh).
#   bash tools/run.sh demo [demo args]   # distillation demo on scikit-learn's digits (real images)
#   bash tools/run.sh test [pytest args] # the whole test suite
# Stack (tools/stack_python.sh): MMKD_STACK=newest (default) installs into $PYTHON (default python3);
# MMKD_STACK=reference uses, and creates when missing, its own virtual environment
# ($MMKD_VENV_DIR/reference, default ~/.cache/mmkd_plugins/venvs/reference) unless $PYTHON is set.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/stack_python.sh
source "$ROOT/tools/stack_python.sh"
PY=$PYTHON
cd "$ROOT"
case "${1:-}" in
  demo)
    shift
    bash tools/install.sh tests  # the demo's data ships with scikit-learn (a test requirement)
    exec "$PY" tools/demo_digits.py "$@"
    ;;
  test)
    shift
    bash tools/install.sh tests
    exec "$PY" -m pytest tests -q -p no:cacheprovider --timeout=900 "$@"
    ;;
  *)
    echo "usage: [MMKD_STACK=newest|reference] bash tools/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
