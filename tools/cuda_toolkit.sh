#!/usr/bin/env bash
# Assemble a CUDA toolkit (CUDA_HOME) from PyPI packages, for building CUDA extensions (mmcv's ops) on
# a machine without a system CUDA toolkit, e.g. a cluster login node with no nvcc.
#
#   bash tools/cuda_toolkit.sh 13 PREFIX     # prints the CUDA_HOME path (PREFIX/cuda) on stdout
#   bash tools/cuda_toolkit.sh auto [PREFIX] # the toolkit to build with: $CUDA_HOME when it has
#       bin/nvcc, else the one of the nvcc on PATH, else the one assembled here for torch's CUDA major
#       (PREFIX default ~/.cache/mmkd_plugins/cuda-<major>)
#   export CUDA_HOME=$(bash tools/cuda_toolkit.sh auto) && export PATH=$CUDA_HOME/bin:$PATH
#
# The major version must be the one torch was built with (torch.version.cuda): torch refuses to build
# an extension with another major. $PYTHON (default python3) is the Python whose torch is used.
#
# What it does (nothing is installed into that Python's environment):
#   1. `pip install --no-deps --target PREFIX/pkgs` of pinned NVIDIA packages:
#        13: nvidia-cuda-nvcc, -nvvm (cicc), -cuda-crt, -cuda-runtime (headers), -cuda-cccl,
#            -cuda-cuobjdump, all CUDA 13.5 (CCCL 3.5)
#        12: not possible, NVIDIA publishes no CUDA 12 nvcc on PyPI (the script says so and exits 3)
#   2. assembles PREFIX/cuda as a symlink tree with the layout torch.utils.cpp_extension expects:
#        bin/     nvcc, ptxas, fatbinary, nvlink, cudafe++, cuobjdump ... (from step 1)
#        nvvm/    cicc and libdevice (from step 1)
#        include/ the headers of step 1 FIRST, then the CUDA headers torch ships in its nvidia/* wheels
#                 (cuBLAS, cuSPARSE, cuSOLVER, cuRAND, NVTX ...) for names step 1 lacks. The order
#                 matters: CCCL 3 stops with "CUDA compiler and CUDA toolkit headers are incompatible"
#                 unless cuda_runtime_api.h's CUDART_VERSION equals nvcc's version.
#        lib64/   torch's own CUDA libraries FIRST (libcudart.so.N is the one loaded at run time, so the
#                 extension links against exactly it), then those of step 1; plus an unversioned
#                 libX.so link for each libX.so.N so that `-lcudart` resolves.
# Idempotent: a second run with the same pins and the same torch only prints the path.
set -euo pipefail

usage() { echo "usage: bash tools/cuda_toolkit.sh 13 PREFIX | auto [PREFIX]   (prints CUDA_HOME)" >&2; exit 2; }
[ $# -ge 1 ] && [ $# -le 2 ] || usage
MAJOR=$1
PREFIX=${2:-}
PY=${PYTHON:-python3}
if [ "$MAJOR" = auto ]; then
  if [ -n "${CUDA_HOME:-}" ] && [ -x "$CUDA_HOME/bin/nvcc" ]; then echo "$CUDA_HOME"; exit 0; fi
  if command -v nvcc >/dev/null; then  # nvcc's own idea of its top folder (follows wrapper scripts)
    here=$(nvcc --dryrun -v -c x.cu 2>&1 | sed -n 's/^#\$ _HERE_=//p' | head -n1)
    if [ -n "$here" ]; then dirname "$here"; exit 0; fi
  fi
  MAJOR=$("$PY" -c "import torch; print((torch.version.cuda or 'none').split('.')[0])") \
    || { echo "[cuda_toolkit] cannot import torch with $PY" >&2; exit 1; }
fi
[ -n "$PREFIX" ] || [ "$MAJOR" = none ] || PREFIX=$HOME/.cache/mmkd_plugins/cuda-$MAJOR
case "$MAJOR" in
  13) PKGS=(nvidia-cuda-nvcc==13.5.37 nvidia-nvvm==13.5.37 nvidia-cuda-crt==13.5.37
            nvidia-cuda-runtime==13.5.37 nvidia-cuda-cccl==13.3.5.0.6 nvidia-cuda-cuobjdump==13.5.37) ;;
  12) cat >&2 <<'MSG'
[cuda_toolkit] CUDA 12 cannot be assembled from PyPI: every nvidia-cuda-nvcc-cu12 wheel (checked
  12.1.66, 12.1.105, 12.2.140, 12.3.107, 12.4.131, 12.6.85, 12.8.93, 12.9.86) holds only bin/ptxas,
  nvvm/lib64/libnvvm.so, libdevice and the crt/ headers: no nvcc, cicc, cudafe++, fatbinary or nvlink.
  For torch built with CUDA 12 (e.g. the reference stack, torch 2.1.2+cu121) either
  - point CUDA_HOME at a CUDA 12 toolkit (a cluster's `module load cuda/12.1`, NVIDIA's installer), or
  - install OpenMMLab's prebuilt mmcv 2.1.0 wheel for cu121 / torch 2.1 from OpenMMLab's own wheel
    index (`mim install mmcv==2.1.0` looks there), where that index can be reached.
MSG
      exit 3 ;;
  none) echo "[cuda_toolkit] torch in $PY is a CPU-only build: CUDA ops need a CUDA build of torch" >&2; exit 1 ;;
  *) usage ;;
esac
log() { printf '[cuda_toolkit] %s\n' "$*" >&2; }

# torch's site-packages/nvidia folder (its CUDA runtime wheels) and the CUDA major it was built with
read -r TORCH_CUDA TORCH_NVIDIA < <("$PY" - <<'EOF'
import os, torch
print(torch.version.cuda or 'none',
      os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(torch.__file__))), 'nvidia'))
EOF
) || { log "cannot import torch with $PY"; exit 1; }
if [ "${TORCH_CUDA%%.*}" != "$MAJOR" ]; then
  log "torch in $PY is built for CUDA $TORCH_CUDA, not CUDA $MAJOR (torch refuses another major)"
  exit 1
fi
[ -d "$TORCH_NVIDIA" ] || { log "no $TORCH_NVIDIA (torch's CUDA runtime wheels) next to torch"; exit 1; }

mkdir -p "$PREFIX"
PREFIX=$(cd "$PREFIX" && pwd)
CUDA_HOME="$PREFIX/cuda"
STAMP="${PKGS[*]} | $TORCH_NVIDIA"
if [ -f "$PREFIX/.stamp" ] && [ "$(cat "$PREFIX/.stamp")" = "$STAMP" ] && "$CUDA_HOME/bin/nvcc" --version >/dev/null 2>&1; then
  echo "$CUDA_HOME"
  exit 0
fi

# 1. the packages (pip --target does not merge into an existing nvidia/ folder: always a fresh one)
log "pip install --target $PREFIX/pkgs ${PKGS[*]}"
rm -rf "$PREFIX/pkgs.new" "$PREFIX/.stamp"
"$PY" -m pip install --disable-pip-version-check -q --no-deps --no-compile --target "$PREFIX/pkgs.new" "${PKGS[@]}" >&2
rm -rf "$PREFIX/pkgs"
mv "$PREFIX/pkgs.new" "$PREFIX/pkgs"

# 2. the CUDA_HOME symlink tree; `cp -rsn` links file by file and never replaces what is there, so
#    the first source of a name wins
new="$PREFIX/cuda.new"
rm -rf "$new"
mkdir -p "$new/bin" "$new/include" "$new/lib64" "$new/nvvm"
merge() {  # merge SUBDIR DEST DIR...: link DIR/SUBDIR/* into DEST, first DIR first
  local sub=$1 dest=$2; shift 2
  for d in "$@"; do
    if [ -d "$d/$sub" ]; then cp -rsn "$d/$sub/." "$dest/"; fi
  done
}
ours=("$PREFIX"/pkgs/nvidia/*/)
torchs=("$TORCH_NVIDIA"/*/)
merge bin "$new/bin" "${ours[@]}"
merge nvvm "$new/nvvm" "${ours[@]}"
merge include "$new/include" "${ours[@]}" "${torchs[@]}"
merge lib "$new/lib64" "${torchs[@]}" "${ours[@]}"
for lib in "$new"/lib64/lib*.so.[0-9]*; do  # libcudart.so.13 -> libcudart.so, for -lcudart
  base="${lib%%.so.*}.so"
  [ -e "$base" ] || ln -s "$(basename "$lib")" "$base"
done
[ -x "$new/bin/nvcc" ] || { log "no bin/nvcc in ${PKGS[0]}"; exit 1; }
[ -n "$(ls "$new"/nvvm/bin/cicc 2>/dev/null)" ] || { log "no nvvm/bin/cicc in the packages"; exit 1; }
[ -e "$new/lib64/libcudart.so" ] || { log "no libcudart.so.* in $TORCH_NVIDIA or the packages"; exit 1; }
rm -rf "$CUDA_HOME"
mv "$new" "$CUDA_HOME"
"$CUDA_HOME/bin/nvcc" --version | tail -n 2 >&2
echo "$STAMP" >"$PREFIX/.stamp"
echo "$CUDA_HOME"
