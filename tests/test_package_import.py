"""``import mmkd_plugins`` (what ``custom_imports`` does) is quiet, light, and registers everything.

Each check runs in a fresh interpreter, outside the repository, so nothing imported by other tests
hides a missing registration or a heavy import. The import registers lazy entries from the committed
registry manifest (no torch); building a name, or importing its module, registers the real class.
"""
import ast
import glob
import importlib.util
import json
import os
import os.path as osp
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

# never imported by our own import path: only where a config / function needs them
HEAVY = ('torch', 'mmdet', 'mmseg', 'mmagic', 'mmpretrain', 'mmcv', 'transformers', 'diffusers', 'scipy',
         'sklearn', 'matplotlib', 'trimesh', 'skimage', 'pkg_resources', 'pandas')
# what mmengine itself imports for the base classes we subclass (mmengine.optim imports transformers
# to register Adafactor when transformers is installed): present in every training script anyway
MMENGINE_BASES = 'import mmengine.model, mmengine.runner, mmengine.hooks, mmengine.dataset'
LIST_HEAVY = f'print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in {HEAVY!r})))'

REGISTRIES = ('MODELS', 'HOOKS', 'METRICS', 'DATASETS', 'TRANSFORMS', 'PARAM_SCHEDULERS', 'LOOPS')


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
    assert proc.stdout.strip().splitlines()[:-1] == [], proc.stdout  # prints nothing itself
    assert ours == [], f'import mmkd_plugins imported {ours}'  # torch included
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
    assert proc.stderr == '', proc.stderr




def _manifest():
    from mmkd_plugins._registry_manifest import MANIFEST
    return MANIFEST


def _load_tool():
    spec = importlib.util.spec_from_file_location('gen_registry_manifest',
                                                  osp.join(REPO, 'tools', 'gen_registry_manifest.py'))
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    return tool


def test_committed_manifest_equals_a_fresh_scan():
    tool = _load_tool()
    fresh = tool.scan()
    assert list(_manifest()) == fresh, (
        f'mmkd_plugins/_registry_manifest.py is stale: run `{tool.COMMAND}` and commit it')
    assert open(tool.MANIFEST).read() == tool.render(fresh), f'run `{tool.COMMAND}`'
    assert tool.main(['--check']) == 0


def test_manifest_scan_finds_every_registration_form(tmp_path):
    tool = _load_tool()
    pkg = tmp_path / 'pkg'
    pkg.mkdir()
    (pkg / '__init__.py').write_text('')
    (pkg / 'mod.py').write_text(
        'from mmengine.registry import MODELS, HOOKS as H\n'
        '@MODELS.register_module()\nclass A: pass\n'
        "@MODELS.register_module(name=['B1', 'B2'])\nclass B: pass\n"
        "@H.register_module(name='C1')\ndef c(): pass\n"
        'class D: pass\nMODELS.register_module(module=D)\n'
        "MODELS.register_module(name='E1')(D)\n")
    assert tool.scan(str(pkg)) == [('HOOKS', 'C1', 'pkg.mod'), ('MODELS', 'A', 'pkg.mod'),
                                   ('MODELS', 'B1', 'pkg.mod'), ('MODELS', 'B2', 'pkg.mod'),
                                   ('MODELS', 'D', 'pkg.mod'), ('MODELS', 'E1', 'pkg.mod')]
    # a registry that is not mmengine's root one cannot be registered lazily: named error
    (pkg / 'bad.py').write_text('from mmdet.registry import MODELS\n'
                                '@MODELS.register_module()\nclass X: pass\n')
    with pytest.raises(ValueError, match='not a registry imported from mmengine.registry'):
        tool.scan(str(pkg))


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


def _config_names():
    used = set()
    for path in glob.glob(osp.join(REPO, 'configs', '**', '*.py'), recursive=True):
        used |= set(re.findall(r"type=['\"]([\w.]+)['\"]", open(path).read()))
    return used


def test_every_registered_name_is_in_the_manifest_and_lazy_after_import(tmp_path):
    ours = _registered_names()
    assert len(ours) > 40 and set(ours.values()) <= set(REGISTRIES)
    assert {(reg, n) for n, reg in ours.items()} <= {(reg, n) for reg, n, _ in _manifest()}
    code = ('import json, sys\nimport mmkd_plugins\nimport mmengine.registry as r\n'
            'from mmkd_plugins._registry_manifest import MANIFEST\n'
            'from mmkd_plugins.utils.lazy_registry import LazyEntry\n'
            'print(json.dumps([n for reg, n, _ in MANIFEST  # (Registry.get imports torch)\n'
            '                  if not isinstance(getattr(r, reg)._module_dict.get(n), LazyEntry)]))\n'
            "print('torch' in sys.modules)")
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    *_, not_lazy, torch_loaded = proc.stdout.strip().splitlines()
    assert json.loads(not_lazy) == [] and torch_loaded == 'False'


# minimal arguments for the names our configs use that have required ones
_BUILD_ARGS = dict(
    BiCTTransformation=dict(old_dim=4, new_dim=4),
    HashHead=dict(hash_bits=8, in_channels=4, loss=dict(type='HyP2Loss', num_classes=3, hash_bits=8)),
    HyP2Loss=dict(num_classes=3, hash_bits=8),
    MGDConnector=dict(student_channels=4, teacher_channels=8),
    UniBCTLoss=dict(num_classes=3),
    ViTKDLoss=dict(student_dims=4, teacher_dims=8),
    ContentContrastiveLoss=dict(in_channels=4),
    StyleContrastiveLoss=dict(in_channels=[4]),
)
_CLF = dict(type='ImageClassifier', backbone=dict(type='CifarResNet'),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=10, in_channels=64))
_BUILD_ARGS.update({n: dict(student=_CLF, teacher=_CLF, allow_random_teacher=True)
                    for n in ('SingleTeacherDistiller', 'CompatibleDistiller')})
# built by the e2e / tool tests, from files on disk (datasets, REALY templates, an old checkpoint)
_NEEDS_FILES = {'BiCTTransformStudent', 'CompatibleSplitDataset', 'REALYDataset', 'REALYMetric',
                'StaticPasteDataset', 'StaticVOSDataset', 'UnpairedStyleDataset', 'VOSDataset'}


def test_every_name_of_our_configs_builds_through_its_lazy_entry(tmp_path):
    manifest = {n: reg for reg, n, _ in _manifest()}
    used = sorted(n for n in _config_names() if n in manifest)
    assert {'SingleTeacherDistiller', 'MGDConnector', 'MGDLoss', 'RNGStateHook'} <= set(used)
    code = f"""
import json, sys
import mmkd_plugins
import mmengine.registry as r
from mmengine.registry import DefaultScope
from mmkd_plugins.utils.lazy_registry import LazyEntry
assert 'torch' not in sys.modules
import mmpretrain.registry  # the classifier the distillers wrap
DefaultScope.get_instance('t', scope_name='mmpretrain')
args = {_BUILD_ARGS!r}
report = {{}}
for name, reg in {[(n, manifest[n]) for n in used]!r}:
    registry = getattr(r, reg)
    before = registry.get(name)
    if name in {sorted(_NEEDS_FILES)!r}:
        real = before.resolve() if isinstance(before, LazyEntry) else before
        built = None
    elif reg == 'PARAM_SCHEDULERS':
        import torch
        opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
        built = registry.build(dict(type=name, decay=0.5), default_args=dict(optimizer=opt))
    else:
        built = registry.build(dict(type=name, **args.get(name, {{}})))
    after = registry.get(name)
    report[name] = [isinstance(before, LazyEntry),
                    not isinstance(after, LazyEntry) and after.__module__.startswith('mmkd_plugins.'),
                    built is None or type(built) is after]
print(json.dumps(report))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(report) == used
    # the first build went through its lazy entry (importing it imports most of the package, so
    # later names are mostly real already); after each build get() is the real class and the
    # object built is an instance of exactly that class
    assert report[used[0]][0], report
    assert all(ok_real and ok_type for _, ok_real, ok_type in report.values()), report


_SCOPE_BUILDS = {
    'mmengine': ('mmengine.registry', 'MODELS', dict(type='MGDLoss', alpha_mgd=2e-5)),
    'mmdet': ('mmdet.registry', 'MODELS', dict(type='MGDConnector', student_channels=4,
                                                 teacher_channels=8)),
    'mmseg': ('mmseg.registry', 'MODELS', dict(type='CifarResNet')),
    'mmpretrain': ('mmpretrain.registry', 'MODELS', dict(type='NKDLoss')),
    'mmagic': ('mmagic.registry', 'MODELS', dict(type='AdaINDecoder')),
}


@pytest.mark.parametrize('scope', sorted(_SCOPE_BUILDS))
def test_lazy_entry_builds_from_every_scope(scope, tmp_path):
    """A child registry (mmdet, mmseg, ...) falls back to the root one, which holds the lazy entry;
    the first build imports the module and from then on every scope gets the real class."""
    module, reg, cfg = _SCOPE_BUILDS[scope]
    code = f"""
import importlib, json, sys
import mmkd_plugins
import mmengine.registry as root
from mmengine.registry import DefaultScope
from mmkd_plugins.utils.lazy_registry import LazyEntry
child = getattr(importlib.import_module({module!r}), {reg!r})
DefaultScope.get_instance('t', scope_name={scope!r})
cfg = {cfg!r}
name = cfg['type']
lazy = isinstance(getattr(root, {reg!r}).get(name), LazyEntry)
obj = child.build(cfg)
real = getattr(root, {reg!r}).get(name)
print(json.dumps([lazy, type(obj).__name__, type(obj) is real, child.get(name) is real,
                  type(obj).__module__, 'torch' in sys.modules]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lazy, cls_name, is_real, child_real, cls_module, _ = json.loads(
        proc.stdout.strip().splitlines()[-1])
    assert lazy and cls_name == cfg['type'] and is_real and child_real
    assert cls_module.startswith('mmkd_plugins.')


def test_direct_import_registers_real_classes_and_subpackages_load_on_access(tmp_path):
    code = """
import json
import mmkd_plugins
from mmengine.registry import MODELS, HOOKS
hook_entry = type(HOOKS._module_dict['RNGStateHook']).__name__
from mmkd_plugins.models.losses import MGDLoss  # releases the lazy entries of its modules
print(json.dumps([MODELS.get('MGDLoss') is MGDLoss,
                  MODELS.get('MGDConnector') is mmkd_plugins.models.connectors.MGDConnector,
                  hook_entry,
                  mmkd_plugins.engine.hooks.RNGStateHook is HOOKS.get('RNGStateHook'),
                  mmkd_plugins.__version__]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from mmkd_plugins.version import __version__
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [True, True, 'LazyEntry', True,
                                                               __version__]


def test_stale_manifest_entry_fails_with_the_command_to_run(tmp_path):
    code = """
import mmkd_plugins
from mmengine.registry import MODELS
from mmkd_plugins.utils.lazy_registry import install_lazy_registry
install_lazy_registry([('MODELS', 'NoSuchLoss', 'mmkd_plugins.models.losses.mgd')])
MODELS.build(dict(type='NoSuchLoss'))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode != 0
    assert "did not register 'NoSuchLoss'" in proc.stderr
    assert 'python tools/gen_registry_manifest.py' in proc.stderr


def test_config_prefix_works_without_torch(tmp_path):
    rel = 'mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py'
    code = f"""
import sys
import mmkd_plugins
from mmengine.config import Config
print(Config._get_cfg_path('mmkd_plugins::{rel}', 'x.py')[0], 'torch' in sys.modules)
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr
    path, torch_loaded = proc.stdout.strip().splitlines()[-1].rsplit(' ', 1)
    assert osp.samefile(path, osp.join(REPO, 'configs', rel)) and torch_loaded == 'False'


@pytest.mark.parametrize('subpackage', ['datasets', 'distillers', 'engine', 'evaluation', 'models'])
def test_each_subpackage_imports_first_without_import_cycles(subpackage, tmp_path):
    """A lazy build (or a direct import) enters the package through one of these: each must import
    first, in a fresh interpreter, and replace the lazy entries of every module it imported."""
    code = f"""
import json, sys
import mmkd_plugins.{subpackage}
import mmengine.registry as r
from mmkd_plugins._registry_manifest import MANIFEST
from mmkd_plugins.utils.lazy_registry import LazyEntry
print(json.dumps([n for reg, n, m in MANIFEST
                  if m in sys.modules and isinstance(getattr(r, reg)._module_dict.get(n), LazyEntry)]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == []


def test_lazy_entry_forwards_attributes_to_the_real_class(tmp_path):
    """mmengine reads class attributes through the registry too (``build_iter_from_epoch`` for
    ``convert_to_iter_based`` schedulers): attribute access resolves the real class; dunder lookups
    (copy, pickle, inspect) do not import anything."""
    code = """
import json, sys
import mmkd_plugins
from mmengine.registry import MODELS
entry = MODELS._module_dict['MGDLoss']
has_dunder = hasattr(entry, '__wrapped__')
before = 'mmkd_plugins.models.losses.mgd' in sys.modules
forward = entry.forward
from mmkd_plugins.models.losses.mgd import MGDLoss
print(json.dumps([has_dunder, before, forward is MGDLoss.forward, MODELS.get('MGDLoss') is MGDLoss,
                  repr(entry)]))
"""
    proc = _python(code, tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [
        False, False, True, True, '<lazy MODELS.MGDLoss from mmkd_plugins.models.losses.mgd>']
