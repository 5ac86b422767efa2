#!/usr/bin/env bash
# Build mmcv (the version pinned in requirements/) with its CUDA ops for the current Python's torch,
# without a GPU, and prove the result: compiled, linked, `import mmcv.ops` loads the CUDA-built _ext,
# and the binary holds code for every architecture asked for. Nothing is installed into that Python.
#
#   bash tools/build_mmcv_cuda.sh                    # python3's torch, archs 8.0;9.0
#   PYTHON=/work/venvs/ref/bin/python bash tools/build_mmcv_cuda.sh
#   bash tools/verify_gpu.sh --build-only            # the same, called from the GPU verification
#
# Environment:
#   TORCH_CUDA_ARCH_LIST   default "8.0;9.0" (sm_80 A100, sm_90 H100/H200)
#   MAX_JOBS               parallel compile jobs (default: number of cores)
#   CUDA_HOME              a CUDA toolkit to use; when unset and no nvcc is on PATH, or when
#   MMKD_CUDA_FROM_PYPI=1  (which also hides any system nvcc / CUDA_HOME), the toolkit is assembled from
#                          PyPI by `tools/cuda_toolkit.sh auto` into $MMKD_CUDA_PREFIX
#                          (default ~/.cache/mmkd_plugins/cuda-<major>; CUDA 13 only)
#   MMKD_WHEEL_CACHE_CUDA  wheel cache (default ~/.cache/mmkd_plugins/wheels-cuda); the wheel goes to
#                          <cache>/torch-<torch version>-cuda/, where `FORCE_CUDA=1
#                          MMKD_WHEEL_CACHE=<cache> bash tools/install.sh` picks it up
#   MMKD_BUILD_NICE        nice level of the compile (default 0; 19 on a shared machine)
# The unpacked source and its object files stay in ~/.cache/mmkd_plugins/build-cuda/<torch>/ until the
# wheel is built: rerunning after an interruption resumes (ninja recompiles only what is missing).
#
# Patches to mmcv 2.1.0's source, the same as tools/install.sh: for torch >= 2.10, -std=c++17 ->
# -std=c++20 in setup.py (torch's headers need C++20; this also applies to nvcc's flags). No other.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-8.0;9.0}
log() { printf '[build_mmcv_cuda %s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }

mmcv_v=$(grep -hE '^mmcv==' "$ROOT"/requirements/constraints*.txt | head -n1 | cut -d= -f3)
read -r torch_v cuda_v < <("$PY" -c "import torch; print(torch.__version__, torch.version.cuda)")
[ "$cuda_v" != None ] || { log "torch $torch_v in $PY is a CPU-only build: a CUDA build of torch is needed"; exit 1; }
torch_tag=${torch_v/+/_}
log "python $PY, torch $torch_v (CUDA $cuda_v), mmcv $mmcv_v, TORCH_CUDA_ARCH_LIST=$TORCH_CUDA_ARCH_LIST"

# 1. the CUDA toolkit
if [ "${MMKD_CUDA_FROM_PYPI:-0}" = 1 ]; then
  clean=
  IFS=: read -ra dirs <<<"$PATH"
  for d in "${dirs[@]}"; do  # hide every system nvcc
    [ -n "$d" ] && [ ! -e "$d/nvcc" ] && clean=${clean:+$clean:}$d
  done
  export PATH=$clean
  unset CUDA_HOME CUDA_PATH
fi
CUDA_HOME=$(PYTHON="$PY" bash "$ROOT/tools/cuda_toolkit.sh" auto ${MMKD_CUDA_PREFIX:+"$MMKD_CUDA_PREFIX"})
export CUDA_HOME PATH=$CUDA_HOME/bin:$PATH
log "nvcc: $(command -v nvcc) ($(nvcc --version | grep -o 'release [0-9.]*, V[0-9.]*')), CUDA_HOME=$CUDA_HOME"

# 2. the wheel (built once, cached)
cache="${MMKD_WHEEL_CACHE_CUDA:-$HOME/.cache/mmkd_plugins/wheels-cuda}/torch-${torch_tag}-cuda"
mkdir -p "$cache"
wheel=$(ls "$cache"/mmcv-"$mmcv_v"-*.whl 2>/dev/null | head -n1 || true)
if [ -z "$wheel" ]; then
  build="$HOME/.cache/mmkd_plugins/build-cuda/torch-${torch_tag}"
  src="$build/mmcv-$mmcv_v"
  if [ ! -f "$src/setup.py" ]; then
    mkdir -p "$build"
    "$PY" -m pip download --disable-pip-version-check -q --no-deps --no-binary :all: --no-build-isolation \
      "mmcv==$mmcv_v" -d "$build"
    tar -xzf "$build/mmcv-$mmcv_v.tar.gz" -C "$build"
    if "$PY" -c "import torch, sys; from packaging.version import parse as p; sys.exit(0 if p(torch.__version__) >= p('2.10') else 1)"; then
      sed -i "s/-std=c++17/-std=c++20/g; s#/std:c++17#/std:c++20#g" "$src/setup.py"
      log "patched $src/setup.py: -std=c++17 -> -std=c++20 (torch >= 2.10)"
    fi
  else
    log "resuming in $src"
  fi
  t0=$(date +%s)
  log "building (log: $build/build.log; progress: find $src/build -name '*.o' | wc -l)"
  FORCE_CUDA=1 MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-$(nproc)} nice -n "${MMKD_BUILD_NICE:-0}" \
    "$PY" -m pip wheel --disable-pip-version-check -v --no-deps --no-build-isolation "$src" -w "$cache" \
    >>"$build/build.log" 2>&1 || { log "build FAILED after $(( $(date +%s) - t0 )) s; tail of $build/build.log:"; tail -n 30 "$build/build.log" >&2; exit 1; }
  log "built in $(( $(date +%s) - t0 )) s"
  wheel=$(ls "$cache"/mmcv-"$mmcv_v"-*.whl | head -n1)
  rm -rf "$src"
fi
log "wheel: $wheel"

# 3. the proof, in a throwaway folder put first on PYTHONPATH (the Python's own mmcv stays untouched)
check="${TMPDIR:-/tmp}/mmcv-cuda-check-${torch_tag}"
rm -rf "$check"
"$PY" -m pip install --disable-pip-version-check -q --no-deps --no-compile --target "$check" "$wheel" >&2
ext=$(ls "$check"/mmcv/_ext*.so)
(cd / && PYTHONPATH="$check" "$PY" -c "
import torch, mmcv, mmcv.ops
from mmcv.ops import nms, roi_align
import mmcv._ext as e
assert e.__file__ == '$ext', e.__file__
print('import mmcv.ops: OK, mmcv', mmcv.__version__, 'from', mmcv.__file__)
print('mmcv._ext:', e.__file__)
print('torch.cuda.is_available():', torch.cuda.is_available())
") || { log "import mmcv.ops with the CUDA wheel FAILED"; exit 1; }
needed=$(readelf -d "$ext" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
echo "NEEDED (readelf -d): $(echo $needed)"
torch_lib=$("$PY" -c "import os, torch; print(os.path.join(os.path.dirname(torch.__file__), 'lib'))")
resolved=$(LD_LIBRARY_PATH="$torch_lib:$(ls -d "$(dirname "$(dirname "$torch_lib")")"/nvidia/*/lib | paste -sd:)" ldd "$ext")
missing=0
for lib in libcudart.so libc10_cuda.so; do  # linked directly, and found where torch keeps them
  name=$(echo "$needed" | grep -m1 "^$lib" || true)
  if [ -z "$name" ]; then echo "  $lib: NOT LINKED"; missing=1; continue; fi
  echo "  $(echo "$resolved" | grep -m1 "$name =>" | sed 's/^\s*//; s/ (0x.*//')"
done
cuobjdump=$(command -v cuobjdump || echo "${CUDA_HOME:-}/bin/cuobjdump")
# the listing is read once into a variable: `cuobjdump | grep -q` under pipefail fails when grep
# stops early and cuobjdump gets SIGPIPE (that reported present architectures as MISSING)
elfs=$("$cuobjdump" --list-elf "$ext" 2>&1 || true)
echo "cuobjdump --list-elf: $(echo "$elfs" | grep -o 'sm_[0-9]*a\?' | sort | uniq -c | awk '{printf "%s x %s, ", $1, $2}')"
for arch in ${TORCH_CUDA_ARCH_LIST//;/ }; do
  sm="sm_${arch//./}"; sm=${sm%+PTX}
  if grep -q "\.${sm}\." <<<"$elfs"; then echo "  $sm: present"; else echo "  $sm: MISSING"; missing=1; fi
done
[ "$missing" = 0 ] || { log "$ext lacks CUDA libraries or architectures (above)"; exit 1; }
log "OK: mmcv $mmcv_v with CUDA ops for torch $torch_v, $TORCH_CUDA_ARCH_LIST"
