"""The two tested stacks: pins, the floors the package declares, and tools/install.sh's switch."""
import os
import re
import subprocess
import sys

import torch
from packaging.requirements import Requirement
from packaging.version import Version

from tests.conftest import REPO

REQ = os.path.join(REPO, 'requirements')


def pins(name):
    """``{package: version}`` of a constraints file, following its ``-c`` includes."""
    out = {}
    with open(os.path.join(REQ, name)) as f:
        for line in f:
            line = line.split('#')[0].strip()
            if line.startswith('-c '):
                out.update(pins(line[3:].strip()))
            elif line:
                req = Requirement(line)
                out[req.name.lower()] = str(next(iter(req.specifier)).version)
    return out


def test_stacks_differ_only_in_torch():
    newest, reference = pins('constraints.txt'), pins('constraints-reference.txt')
    assert reference['torch'] == '2.1.2' and reference['torchvision'] == '0.16.2'
    assert Version(newest['torch']) > Version(reference['torch'])
    assert {k: v for k, v in newest.items() if not k.startswith('torch')} \
        == {k: v for k, v in reference.items() if not k.startswith('torch')}
    assert newest['mmcv'] == '2.1.0'


def test_declared_floors_are_the_tested_reference_stack():
    """setup.py reads requirements/runtime.txt: its floors are the reference stack's pins."""
    reference = pins('constraints-reference.txt')
    with open(os.path.join(REQ, 'runtime.txt')) as f:
        reqs = [Requirement(ln.split('#')[0].strip()) for ln in f if ln.split('#')[0].strip()]
    floors = {r.name.lower(): min(Version(s.version) for s in r.specifier if s.operator == '>=')
              for r in reqs if any(s.operator == '>=' for s in r.specifier)}
    assert floors['torch'] == Version(reference['torch'])
    assert floors['mmengine'] == Version(reference['mmengine'])


def test_running_torch_is_one_of_the_tested_stacks():
    tested = {pins('constraints.txt')['torch'], pins('constraints-reference.txt')['torch']}
    assert torch.__version__.split('+')[0] in tested


def test_install_refuses_an_unknown_stack():
    proc = subprocess.run(['bash', os.path.join(REPO, 'tools', 'install.sh')], capture_output=True,
                          text=True, env=dict(os.environ, MMKD_STACK='oldest'), timeout=60)
    assert proc.returncode == 2
    assert re.search(r"MMKD_STACK must be 'newest' or 'reference', not 'oldest'", proc.stderr)


def test_install_on_a_ready_stack_only_checks(tmp_path):
    """Run on the stack this test runs in: nothing to install, and it says which stack it checked."""
    stack = 'reference' if torch.__version__.startswith('2.1.') else 'newest'
    proc = subprocess.run(['bash', os.path.join(REPO, 'tools', 'install.sh')], capture_output=True,
                          text=True, env=dict(os.environ, MMKD_STACK=stack, PYTHON=sys.executable),
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f'stack: {stack}' in proc.stderr
    assert 'installing' not in proc.stderr and 'building' not in proc.stderr, proc.stderr


def test_reference_stack_never_installs_into_python3(tmp_path):
    """MMKD_STACK=reference without $PYTHON (tools/install.sh run directly, as well as tools/run.sh)
    resolves to its own virtual environment, created when missing, never to python3 itself (whose
    newest-stack torch the reference pins would replace); an explicit $PYTHON is respected."""
    script = f'source {os.path.join(REPO, "tools", "stack_python.sh")}; echo "$MMKD_STACK $PYTHON"'
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHON', 'MMKD_STACK')}
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=120,
                          env=dict(env, MMKD_STACK='reference', MMKD_VENV_DIR=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    venv_python = tmp_path / 'reference' / 'bin' / 'python'
    assert proc.stdout.split() == ['reference', str(venv_python)]
    assert venv_python.exists() and 'creating the reference-stack virtual environment' in proc.stderr
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=60,
                          env=dict(env, MMKD_STACK='reference', PYTHON='/opt/py/bin/python'))
    assert proc.stdout.split() == ['reference', '/opt/py/bin/python']
    proc = subprocess.run(['bash', '-c', script], capture_output=True, text=True, timeout=60, env=env)
    assert proc.stdout.split() == ['newest', 'python3']
