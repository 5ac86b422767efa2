"""``import mmkd_plugins`` (what ``custom_imports`` does) is quiet, light, and registers everything.

Each check runs in a fresh interpreter, outside the repository, so nothing imported by other tests
hides a missing registration or a heavy import.
"""
import ast
import glob
import json
import os
import os.path as osp
import re
import subprocess
import sys

from tests.conftest import REPO

# never imported by our own import path: only where a config / function needs them
HEAVY = ('mmdet', 'mmseg', 'mmagic', 'mmpretrain', 'mmcv', 'transformers', 'diffusers', 'scipy',
         'sklearn', 'matplotlib', 'trimesh', 'skimage', 'pkg_resources', 'pandas')
# what mmengine itself imports for the base classes we subclass (mmengine.optim imports transformers
# to register Adafactor when transformers is installed): present in every training script anyway
MMENGINE_BASES = 'import mmengine.model, mmengine.runner, mmengine.hooks, mmengine.dataset'
LIST_HEAVY = f'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))'

REGISTRIES = ('MODELS', 'HOOKS', 'METRICS', 'DATASETS', 'TRANSFORMS', 'PARAM_SCHEDULERS')


def _python(code, tmp_path, *flags):
    env = {k: v for k, v in os.environ.items() if k not in ('PYTHONWARNINGS', 'PYTHONPATH')}
    env.update(PYTHONPATH=REPO, OMP_NUM_THREADS='1')
    return subprocess.run([sys.executable, *flags, '-c', code], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)


def test_import_prints_nothing_and_imports_no_heavy_library(tmp_path):
    proc = _python(f'import sys, json\nimport mmkd_plugins\n{LIST_HEAVY}', tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == '', f'import mmkd_plugins printed warnings:\n{proc.stderr}'
    ours = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ('mmdet', 'mmseg', 'mmagic', 'mmpretrain', 'mmcv', 'diffusers', 'scipy', 'sklearn'):
        assert name not in ours
    proc = _python(f'import sys, json\n{MMENGINE_BASES}\n{LIST_HEAVY}', tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert set(ours) <= set(json.loads(proc.stdout.strip().splitlines()[-1])), ours
    # after what every training script has imported, importing us adds no heavy module
    proc = _python(f'import sys, json\n{MMENGINE_BASES}\nbefore = set(sys.modules)\n'
                   'import mmkd_plugins\n'
                   'print(json.dumps(sorted(m for m in set(sys.modules) - before\n'
                   f'                        if m.split(".")[0] in {HEAVY!r})))', tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
    # with every warning shown (DeprecationWarning included), none comes from our own modules
    proc = _python('import mmkd_plugins', tmp_path, '-W', 'always')
    assert proc.returncode == 0, proc.stderr
    ours = [ln for ln in proc.stderr.splitlines() if 'mmkd_plugins' in ln]
    assert ours == [], proc.stderr


def _registered_names():
    """Names our source registers with ``@<REGISTRY>.register_module()`` (class or function)."""
    names = {}
    for path in glob.glob(osp.join(REPO, 'mmkd_plugins', '**', '*.py'), recursive=True):
        tree = ast.parse(open(path).read())
        for node in ast.walk(tree):
            if not isinstance(node, (ast.ClassDef, ast.FunctionDef)):
                continue
            for dec in node.decorator_list:
                if (isinstance(dec, ast.Call) and isinstance(dec.func, ast.Attribute)
                        and dec.func.attr == 'register_module'
                        and isinstance(dec.func.value, ast.Name)):
                    kw = {k.arg: k.value for k in dec.keywords}
                    name = kw['name'].value if 'name' in kw else node.name
                    names[name] = dec.func.value.id
    return names


def test_every_module_name_of_our_configs_is_registered_after_import(tmp_path):
    ours = _registered_names()
    assert len(ours) > 40 and set(ours.values()) <= set(REGISTRIES)
    used = set()
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True):
        used |= set(re.findall(r"type=['\"]([\w.]+)['\"]", open(path).read()))
    used_ours = {n for n in used if n in ours}
    assert {'SingleTeacherDistiller', 'MGDConnector', 'MGDLoss', 'RNGStateHook'} <= used_ours
    code = ('import json\nimport mmkd_plugins\nimport mmengine.registry as r\n'
            f'names = json.loads({json.dumps(json.dumps(ours))})\n'
            'missing = [n for n, reg in names.items() if getattr(r, reg).get(n) is None]\n'
            'print(json.dumps(missing))')
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []
