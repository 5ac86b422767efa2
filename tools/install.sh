#!/usr/bin/env bash
# Install whatever is missing of the OpenMMLab stack and of mmkd_plugins, into the current Python.
#
#   bash tools/install.sh            # runtime stack + mmkd_plugins (editable)
#   bash tools/install.sh tests      # ... plus the test requirements
#   MMKD_STACK=reference bash tools/install.sh tests   # the reference stack instead (see below)
#
# Two tested stacks (README "Installation"), chosen with MMKD_STACK:
#   newest    (default) torch 2.14.1 / torchvision 0.29.1: requirements/constraints.txt
#   reference torch 2.1.2 / torchvision 0.16.2, the stack OpenMMLab publishes mmcv 2.1.0 wheels for
#             and most mmdet 3.3 / mmseg 1.2 users run: requirements/constraints-reference.txt
# The default is `newest` because it is the stack the README's demo and benchmark numbers were
# measured on, and on the project's machines its torch comes from the local disk (no 2.5 GB
# download). newest installs into $PYTHON (default python3); reference, without $PYTHON, into its own
# virtual environment (tools/stack_python.sh), so that its torch 2.1.2 never replaces python3's.
#
# Idempotent and fast on a second run: every step first checks whether it is already satisfied.
# mmcv 2.1.0 (the newest mmcv that mmdet 3.3 / mmseg 1.2.2 accept) has no wheels on PyPI, so it is
# built from its source distribution once, with compiled ops, and the wheel is kept in
# $MMKD_WHEEL_CACHE (default ~/.cache/mmkd_plugins/wheels/<torch version>/) for later installs.
# torch >= 2.10 headers require C++20 while mmcv 2.1.0's setup.py asks for C++17: the flag is patched
# in the unpacked source before building (no other change).
# Set FORCE_CUDA=1 on a GPU cluster to build the CUDA ops too: nvcc comes from $CUDA_HOME, from PATH,
# or (no nvcc on the node, torch built for CUDA 13) from PyPI through tools/cuda_toolkit.sh.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=tools/stack_python.sh
source "$ROOT/tools/stack_python.sh"  # reference without $PYTHON: its own venv, never python3's
PY=$PYTHON
case "$MMKD_STACK" in
  newest) CONSTRAINTS="$ROOT/requirements/constraints.txt" ;;
  reference) CONSTRAINTS="$ROOT/requirements/constraints-reference.txt" ;;
  *) echo "[install] MMKD_STACK must be 'newest' or 'reference', not '$MMKD_STACK'" >&2; exit 2 ;;
esac
WHAT=${1:-runtime}
PIP=("$PY" -m pip install --disable-pip-version-check -q -c "$CONSTRAINTS")

log() { printf '[install] %s\n' "$*" >&2; }
pin() { cat "$CONSTRAINTS" "$ROOT/requirements/constraints-common.txt" | grep -E "^$1==" | head -n1 | cut -d= -f3; }

have() {  # have MODULE [VERSION]: module importable (with that version when given)
  (cd / && "$PY" - "$@") <<'EOF' >/dev/null 2>&1
import importlib, sys
mod = importlib.import_module(sys.argv[1])
if len(sys.argv) > 2:
    v = getattr(mod, '__version__', '')
    sys.exit(0 if v.split('+')[0] == sys.argv[2] else 1)
EOF
}

start=$(date +%s)
log "stack: $MMKD_STACK ($(basename "$CONSTRAINTS")), python: $("$PY" -c 'import sys; print(sys.executable)')"

# 1. torch, torchvision, build tools, mmengine, mim.
if ! have torch "$(pin torch)" || ! have torchvision "$(pin torchvision)" || ! have mmengine "$(pin mmengine)" \
    || ! have mim || ! have setuptools "$(pin setuptools)" || ! have numpy "$(pin numpy)"; then
  log "installing torch, torchvision, mmengine, openmim"
  "${PIP[@]}" torch torchvision numpy setuptools wheel ninja mmengine openmim
fi

# 2. mmcv with compiled ops, built once from source and cached.
mmcv_ok() { (cd / && "$PY" -c "import mmcv, mmcv.ops; from mmcv.ops import nms, roi_align") >/dev/null 2>&1 && have mmcv "$(pin mmcv)"; }
if ! mmcv_ok; then
  mmcv_v=$(pin mmcv)
  torch_tag=$("$PY" -c "import torch; print(torch.__version__.replace('+', '_'))")
  cache="${MMKD_WHEEL_CACHE:-$HOME/.cache/mmkd_plugins/wheels}/torch-${torch_tag}${FORCE_CUDA:+-cuda}"
  mkdir -p "$cache"
  wheel=$(ls "$cache"/mmcv-"$mmcv_v"-*.whl 2>/dev/null | head -n1 || true)
  if [ -z "$wheel" ]; then
    if [ -n "${FORCE_CUDA:-}" ]; then  # CUDA ops: $CUDA_HOME, nvcc on PATH, else CUDA 13 from PyPI
      CUDA_HOME=$(PYTHON="$PY" bash "$ROOT/tools/cuda_toolkit.sh" auto) || exit 1
      export CUDA_HOME PATH="$CUDA_HOME/bin:$PATH"
    fi
    log "building mmcv $mmcv_v with ops from source (once; about 25 min on 2 cores)"
    work=$(mktemp -d)
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$mmcv_v" -d "$work"
    tar -xzf "$work/mmcv-$mmcv_v.tar.gz" -C "$work"
    src="$work/mmcv-$mmcv_v"
    if "$PY" -c "import torch, sys; from packaging.version import parse as p; sys.exit(0 if p(torch.__version__) >= p('2.10') else 1)"; then
      sed -i "s/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g" "$src/setup.py"
    fi
    MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} "$PY" -m pip wheel --disable-pip-version-check -q \
      --no-deps --no-build-isolation "$src" -w "$cache"
    rm -rf "$work"
    wheel=$(ls "$cache"/mmcv-"$mmcv_v"-*.whl | head -n1)
  fi
  log "installing $wheel"
  "${PIP[@]}" "$wheel"
  mmcv_ok || { log "mmcv installed but its ops do not import"; exit 1; }
fi

# 3. The OpenMMLab repos the plugins extend.
if ! have mmpretrain "$(pin mmpretrain)" || ! have mmdet "$(pin mmdet)" || ! have mmseg "$(pin mmsegmentation)" \
    || ! have ftfy || ! have regex; then
  log "installing mmpretrain, mmdet, mmsegmentation"
  "${PIP[@]}" -r "$ROOT/requirements/mminstall.txt"
fi

# 3b. mmagic (style transfer runs without it; with it, the mmagic scope sees our modules).
if ! (cd / && "$PY" -c "import mmagic.models, mmagic.datasets, mmagic.evaluation") >/dev/null 2>&1; then
  log "installing mmagic 1.2.0 and its import-time dependencies (--no-deps)"
  "$PY" -m pip install --disable-pip-version-check -q --no-deps -r "$ROOT/requirements/mmagic.txt"
fi

# 4. mmkd_plugins itself (editable, so configs/ and tools/ are used in place), and test extras.
if ! (cd / && "$PY" -c "import mmkd_plugins, os, sys; sys.exit(0 if os.path.dirname(os.path.dirname(os.path.abspath(mmkd_plugins.__file__))) == sys.argv[1] else 1)" "$ROOT") >/dev/null 2>&1; then
  log "installing mmkd_plugins from $ROOT"
  "${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT"
fi
# 4b. The optional C kernels of the hashing evaluation (hamming_search.py; plain C, a few seconds):
# built in place when missing or older than their source; without a C compiler the evaluation takes
# its torch path (same results, slower).
NATIVE_SRC="$ROOT/mmkd_plugins/evaluation/metrics/csrc/hamming_native.c"
NATIVE_SO="$ROOT/mmkd_plugins/evaluation/metrics/_hamming_native$("$PY" -c "import sysconfig; print(sysconfig.get_config_var('EXT_SUFFIX'))")"
if [ ! -f "$NATIVE_SO" ] || [ "$NATIVE_SRC" -nt "$NATIVE_SO" ]; then
  if command -v "${CC:-cc}" >/dev/null 2>&1 || command -v gcc >/dev/null 2>&1; then
    log "building the native Hamming kernels (setup.py build_ext --inplace)"
    (cd "$ROOT" && "$PY" setup.py -q build_ext --inplace >/dev/null)
  else
    log "no C compiler: the hashing evaluation takes its torch path (same results, slower)"
  fi
fi
if [ "$WHAT" = tests ]; then
  # pip only checks (a few seconds) when everything is already there
  "${PIP[@]}" -r "$ROOT/requirements/tests.txt"
fi

log "stack ready in $(( $(date +%s) - start )) s"
