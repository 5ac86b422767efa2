"""tools/cuda_toolkit.sh: the CUDA_HOME it assembles from (here: fake) NVIDIA packages and torch.

A stand-in ``python`` answers the script's two questions (torch's CUDA version and nvidia/ folder)
and plays ``pip install --target`` by laying out a miniature nvcc package, so the layout rules are
checked without the network: nvcc's own headers win over torch's, torch's libcudart is the one
linked, nothing is reinstalled on a second run, and CUDA 12 is refused with the reason.
"""
import os
import os.path as osp
import stat
import subprocess

import pytest

from tests.conftest import REPO

SCRIPT = osp.join(REPO, 'tools', 'cuda_toolkit.sh')

FAKE_PYTHON = r'''#!/usr/bin/env bash
# stand-in for python: torch queries and `-m pip install ... --target DIR PKGS`
if [ "$1" = -m ] && [ "$2" = pip ]; then
  echo "pip $*" >>"$FAKE_ROOT/pip_calls"
  while [ $# -gt 0 ] && [ "$1" != --target ]; do shift; done
  t=$2/nvidia/cu13
  mkdir -p "$t/bin" "$t/nvvm/bin" "$t/include/cccl/cuda" "$t/lib"
  printf '#!/bin/sh\necho "Cuda compilation tools, release 13.5, V13.5.37"\n' >"$t/bin/nvcc"
  printf '#!/bin/sh\n' >"$t/nvvm/bin/cicc"
  chmod +x "$t/bin/nvcc" "$t/nvvm/bin/cicc"
  echo '#define CUDART_VERSION 13050' >"$t/include/cuda_runtime_api.h"
  echo cccl >"$t/include/cccl/cuda/std"
  echo 'runtime 13.5' >"$t/lib/libcudart.so.13"
  echo devrt >"$t/lib/libcudadevrt.a"
  exit 0
fi
if [ "$1" = -c ]; then echo "${FAKE_TORCH_CUDA:-13.0}" | cut -d. -f1; exit 0; fi  # auto: the major
echo "${FAKE_TORCH_CUDA:-13.0} $FAKE_ROOT/site/nvidia"  # the script's heredoc: version and nvidia/
'''


@pytest.fixture
def fake(tmp_path):
    torch_cu13 = tmp_path / 'site' / 'nvidia' / 'cu13'
    (torch_cu13 / 'include').mkdir(parents=True)
    (torch_cu13 / 'lib').mkdir()
    (torch_cu13 / 'include' / 'cuda_runtime_api.h').write_text('#define CUDART_VERSION 13000\n')
    (torch_cu13 / 'include' / 'cublas_v2.h').write_text('cublas\n')
    (torch_cu13 / 'lib' / 'libcudart.so.13').write_text('runtime 13.0\n')
    py = tmp_path / 'python'
    py.write_text(FAKE_PYTHON)
    py.chmod(py.stat().st_mode | stat.S_IEXEC)
    env = dict(os.environ, PYTHON=str(py), FAKE_ROOT=str(tmp_path), HOME=str(tmp_path / 'home'))
    env.pop('CUDA_HOME', None)
    return tmp_path, env


def run(env, *args):
    return subprocess.run(['bash', SCRIPT, *args], env=env, capture_output=True, text=True, timeout=60)


def test_assembles_cuda_home_with_nvcc_headers_first_and_torch_libcudart(fake):
    root, env = fake
    proc = run(env, '13', str(root / 'tk'))
    assert proc.returncode == 0, proc.stderr
    home = proc.stdout.strip()
    assert home == str(root / 'tk' / 'cuda')
    # nvcc's runtime headers (13.5) shadow torch's (13.0); torch's cuBLAS headers fill the gaps
    assert '13050' in open(osp.join(home, 'include', 'cuda_runtime_api.h')).read()
    assert open(osp.join(home, 'include', 'cublas_v2.h')).read() == 'cublas\n'
    assert osp.isfile(osp.join(home, 'include', 'cccl', 'cuda', 'std'))
    # the libcudart linked is torch's own, reachable as -lcudart; the package's static libs are there too
    assert open(osp.join(home, 'lib64', 'libcudart.so')).read() == 'runtime 13.0\n'
    assert osp.realpath(osp.join(home, 'lib64', 'libcudart.so')) == str(
        root / 'site' / 'nvidia' / 'cu13' / 'lib' / 'libcudart.so.13')
    assert osp.isfile(osp.join(home, 'lib64', 'libcudadevrt.a'))
    assert os.access(osp.join(home, 'bin', 'nvcc'), os.X_OK)
    assert osp.isfile(osp.join(home, 'nvvm', 'bin', 'cicc'))
    calls = (root / 'pip_calls').read_text().splitlines()
    assert len(calls) == 1 and 'nvidia-cuda-nvcc==13.5.37' in calls[0] and '--target' in calls[0]

    # idempotent: same path, pip not called again
    again = run(env, '13', str(root / 'tk'))
    assert again.returncode == 0 and again.stdout.strip() == home
    assert len((root / 'pip_calls').read_text().splitlines()) == 1


def test_auto_prefers_an_existing_cuda_home_else_assembles_for_torchs_major(fake):
    root, env = fake
    env = dict(env, PATH='/usr/bin:/bin')  # no nvcc on PATH (none in /usr/bin on the test machines)
    if any(osp.exists(osp.join(d, 'nvcc')) for d in ('/usr/bin', '/bin')):
        pytest.skip('this machine has nvcc in /usr/bin')
    built = run(env, 'auto')
    assert built.returncode == 0, built.stderr
    assert built.stdout.strip() == str(root / 'home' / '.cache' / 'mmkd_plugins' / 'cuda-13' / 'cuda')
    given = run(dict(env, CUDA_HOME=built.stdout.strip()), 'auto', str(root / 'elsewhere'))
    assert given.stdout.strip() == built.stdout.strip() and not (root / 'elsewhere').exists()


def test_refuses_cuda_12_and_a_major_torch_was_not_built_with(fake):
    root, env = fake
    proc = run(env, '12', str(root / 'tk'))
    assert proc.returncode == 3 and 'nvidia-cuda-nvcc-cu12' in proc.stderr and 'only bin/ptxas' in proc.stderr
    assert not (root / 'pip_calls').exists()
    proc = run(dict(env, FAKE_TORCH_CUDA='12.1'), '13', str(root / 'tk'))
    assert proc.returncode == 1 and 'built for CUDA 12.1, not CUDA 13' in proc.stderr
    proc = run(dict(env, FAKE_TORCH_CUDA='none', PATH='/usr/bin:/bin'), 'auto')
    assert proc.returncode == 1 and 'CPU-only build' in proc.stderr
    assert run(env, '11', str(root / 'tk')).returncode == 2
