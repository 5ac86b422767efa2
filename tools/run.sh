#!/usr/bin/env bash
# The two quick-start commands. Each installs whatever is missing first (tools/install.sh).
#   bash tools/run.sh demo [demo args]   # distillation demo on scikit-learn's digits (real images)
#   bash tools/run.sh test [pytest args] # the whole test suite
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
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
    echo "usage: bash tools/run.sh demo|test [args]" >&2
    exit 2
    ;;
esac
