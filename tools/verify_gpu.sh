#!/usr/bin/env bash
# GPU verification: on a machine with CUDA,
#   1. builds mmcv 2.1.0 with the CUDA ops (FORCE_CUDA=1 through tools/install.sh, into its own wheel
#      cache, $MMKD_WHEEL_CACHE_CUDA, default ~/.cache/mmkd_plugins/wheels-cuda; only for the GPU's
#      own architecture unless TORCH_CUDA_ARCH_LIST is set) when the installed mmcv has none;
#   2. runs the GPU-marked tests (`pytest -m gpu`: mmcv CUDA ops, fp16 AMP through AmpOptimWrapper
#      with the distiller, NCCL DDP with 2 processes when there are 2 GPUs, SWEM inference at 480p
#      with its FPS, the distill step-time benchmark on GPU);
#   3. runs benchmarks/distill_step_time.py on the GPU (batch 32 at 224x224);
#   4. writes benchmarks/results/gpu_verification.md (and distill_step_time_gpu.md).
# On a machine without CUDA it says what it skips and exits 0 without changing any result file.
# Without nvcc (no CUDA_HOME, none on PATH) step 1 takes the CUDA toolkit from PyPI packages
# (tools/cuda_toolkit.sh; CUDA 13 only, NVIDIA publishes no CUDA 12 nvcc there).
#
#   bash tools/verify_gpu.sh
#   bash tools/verify_gpu.sh --build-only   # no GPU needed: only build mmcv's CUDA ops for this
#                                           # Python's torch and prove the wheel (tools/build_mmcv_cuda.sh)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
PY=${PYTHON:-python3}
cd "$ROOT"
OUT_MD=benchmarks/results/gpu_verification.md
if [ "${1:-}" = --build-only ]; then
  exec bash tools/build_mmcv_cuda.sh
fi

if ! "$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" >/dev/null 2>&1; then
  cat <<MSG
verify_gpu: no CUDA device (torch.cuda.is_available() is False, or torch is not installed).
SKIPPED, nothing measured:
  - building mmcv with CUDA ops (FORCE_CUDA=1 tools/install.sh); without a GPU use
    'bash tools/verify_gpu.sh --build-only' to build and check them
  - pytest -m gpu: mmcv CUDA ops vs CPU, fp16 AMP (AmpOptimWrapper) with the distiller,
    NCCL DDP with 2 processes, SWEM inference at 480p (FPS), distill step time on GPU
  - benchmarks/distill_step_time.py --device cuda
$OUT_MD is left unchanged (its GPU numbers stay "not measured").
MSG
  exit 0
fi

LOGDIR=$(mktemp -d)
RESULTS="$LOGDIR/results"
mkdir -p "$RESULTS"
status=0
log() { printf '[verify_gpu] %s\n' "$*" >&2; }

# 1. mmcv with CUDA ops
cuda_ops() { (cd / && "$PY" -c "import torch; from mmcv.ops import nms; b = torch.tensor([[0., 0., 1., 1.]]).cuda(); nms(b, torch.ones(1).cuda(), 0.5)") >/dev/null 2>&1; }
mmcv_build="already had CUDA ops"
if ! cuda_ops; then
  log "the installed mmcv has no CUDA ops: rebuilding it with FORCE_CUDA=1 (log: $LOGDIR/mmcv_build.log)"
  arch=${TORCH_CUDA_ARCH_LIST:-$("$PY" -c "import torch; print('%d.%d' % torch.cuda.get_device_capability())")}
  t0=$(date +%s)
  if cuda_home=$(PYTHON="$PY" bash tools/cuda_toolkit.sh auto 2>"$LOGDIR/mmcv_build.log"); then
    export CUDA_HOME=$cuda_home PATH="$cuda_home/bin:$PATH"  # nvcc from PyPI when there is no other
  fi
  "$PY" -m pip uninstall -y -q mmcv >>"$LOGDIR/mmcv_build.log" 2>&1 || true
  if FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="$arch" \
      MMKD_WHEEL_CACHE="${MMKD_WHEEL_CACHE_CUDA:-$HOME/.cache/mmkd_plugins/wheels-cuda}" \
      bash tools/install.sh tests >>"$LOGDIR/mmcv_build.log" 2>&1 && cuda_ops; then
    mmcv_build="built with FORCE_CUDA=1 for arch $arch in $(( $(date +%s) - t0 )) s"
  else
    mmcv_build="FAILED after $(( $(date +%s) - t0 )) s (tail of the log below)"
    status=1
  fi
fi
log "mmcv: $mmcv_build"

# 2. GPU-marked tests
log "pytest -m gpu"
MMKD_GPU_RESULTS="$RESULTS" "$PY" -m pytest tests -m gpu -q -p no:cacheprovider -rs \
  --junitxml="$LOGDIR/gpu_tests.xml" >"$LOGDIR/gpu_tests.log" 2>&1 || status=1
tail -n 5 "$LOGDIR/gpu_tests.log" >&2

# 3. step-time benchmark on GPU
log "benchmarks/distill_step_time.py --device cuda"
"$PY" benchmarks/distill_step_time.py --device cuda --batch 32 --size 224 --repeats 20 \
  --out benchmarks/results/distill_step_time_gpu.md >"$LOGDIR/bench.log" 2>&1 || status=1

# 4. results file
"$PY" - "$LOGDIR" "$RESULTS" "$OUT_MD" "$mmcv_build" "$status" <<'PYEOF'
import glob, json, os, subprocess, sys, xml.etree.ElementTree as ET
import torch
logdir, results, out, mmcv_build, status = sys.argv[1:]
lines = ['# GPU verification', '',
         f'Produced by `bash tools/verify_gpu.sh` on {torch.cuda.device_count()} x '
         f'{torch.cuda.get_device_name(0)} (torch {torch.__version__}, CUDA {torch.version.cuda}).', '',
         f'- mmcv with CUDA ops: {mmcv_build}']
if 'FAILED' in mmcv_build:
    lines += ['', '```', open(os.path.join(logdir, 'mmcv_build.log')).read()[-3000:], '```']
lines += ['', '| GPU test | outcome |', '|---|---|']
try:
    for case in ET.parse(os.path.join(logdir, 'gpu_tests.xml')).getroot().iter('testcase'):
        outcome = 'passed'
        for tag in ('failure', 'error', 'skipped'):
            node = case.find(tag)
            if node is not None:
                outcome = f"{tag}: {(node.get('message') or '').splitlines()[0][:150] if node.get('message') else ''}"
        lines.append(f"| {case.get('name')} | {outcome} |")
except (OSError, ET.ParseError) as err:
    lines.append(f'| (no test report: {err}) | |')
figures = {os.path.basename(p)[:-5]: json.load(open(p)) for p in sorted(glob.glob(f'{results}/*.json'))}
if 'swem_480p' in figures:
    s = figures['swem_480p']
    lines += ['', f"SWEM (ResNet-50 config, random weights) at {s['resolution']}: **{s['fps']:.1f} FPS** "
              f"({s['frames']} frames in {s['seconds']:.2f} s after a warm-up video; peak memory "
              f"{s['peak_memory_mib']:.0f} MiB)."]
if 'amp_fp16' in figures:
    a = figures['amp_fp16']
    lines += ['', f"fp16 AMP (digits MGD distiller, AmpOptimWrapper): {a['iterations']} iterations, "
              f"final loss scale {a['loss_scale']:.0f}, losses first {a['loss_first']} last {a['loss_last']}."]
bench = 'benchmarks/results/distill_step_time_gpu.md'
if os.path.exists(bench):
    lines += ['', '## Distill step time on GPU', '', open(bench).read()]
lines += ['', f'Overall: {"all steps passed" if status == "0" else "SOME STEPS FAILED (see above)"}.', '']
# the GPU-less CUDA build record (tools/build_mmcv_cuda.sh) is not measured here: carry it over
head = '\n## mmcv 2.1.0 CUDA builds without a GPU'
old = open(out).read() if os.path.exists(out) else ''
if head in old:
    kept = old[old.index(head):]
    nxt = kept.find('\n## ', len(head))
    lines += [kept[1:nxt if nxt >= 0 else None].rstrip('\n'), '']
open(out, 'w').write('\n'.join(lines))
print(f'wrote {out}')
PYEOF
log "logs in $LOGDIR"
exit $status
