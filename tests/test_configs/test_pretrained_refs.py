"""Every pretrained reference in every shipped config really loads.

For each entry config under ``configs/`` (all method folders; files in ``_base_`` folders or starting
with ``_`` are pieces that entry configs inherit), the test walks the resolved config for the
references to weights:

* ``init_cfg`` entries of ``type='Pretrained'`` anywhere in the model dict (student, backbones, nested
  models), and ``pretrained='<checkpoint>'`` strings (mmseg / older backbones turn them into one);
* ``teacher_ckpt`` (a local path or a URL): the teacher, built from its own config (``'mmdet::...'``,
  ``'mmpretrain::...'`` or a file, loaded as the distiller does), must hold exactly that file;
* the top-level ``load_from`` (loaded by the Runner after ``init_weights``).

Each reference is replaced by a local file holding distinct random weights of the right shapes and
key prefix (the module's own state dict, under ``<prefix>.`` when the ``init_cfg`` has a prefix). The
model is built as the Runner builds it (default scope, custom imports, top-level data
preprocessor), ``init_weights()`` runs, ``load_from`` is loaded as ``Runner.load_checkpoint`` does,
and every tensor the file covers must now equal the file. A failure names the config, the
reference, the module and the tensors that differ. References inside a teacher's own config are
superseded by ``teacher_ckpt`` (the teacher is never initialised from them) and are not checked.

Configs whose resolved model, ``load_from`` and scope are identical share one check (the first
config of the group names it), so every distinct reference is covered once. Nothing is downloaded:
every reference points at a local file before anything is built.
"""
import atexit
import contextlib
import copy
import functools
import glob
import json
import os
import os.path as osp
import shutil
import tempfile
from typing import Any, Dict, List, Optional, Tuple

import pytest
import torch
from torch import nn

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG_ROOT = osp.join(REPO, 'configs')


# ---------------------------------------------------------------------------------------- configs
def entry_configs() -> List[str]:
    """All shipped entry configs (relative to the repository root)."""
    out = []
    for path in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True):
        rel = osp.relpath(path, CONFIG_ROOT)
        if any(part.startswith('_') for part in rel.split(os.sep)):
            continue
        if osp.basename(rel) == 'recipes.py':  # the recipe record beside the configs
            continue
        out.append(osp.relpath(path, REPO))
    return sorted(out)


def _plain(obj: Any) -> Any:
    """ConfigDict / tuples -> plain dicts / lists (for copying, hashing and editing)."""
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def load_entry(rel: str) -> dict:
    """What the Runner takes from a config: model (with the top-level data preprocessor merged in
    as ``Runner.__init__`` does), ``load_from``, ``default_scope``, ``custom_imports``."""
    from mmengine.config import Config
    cfg = Config.fromfile(osp.join(REPO, rel))
    model = _plain(cfg.get('model')) if cfg.get('model') is not None else None
    if isinstance(model, dict) and cfg.get('data_preprocessor') is not None:
        model.setdefault('data_preprocessor', _plain(cfg.data_preprocessor))
    return dict(model=model, load_from=cfg.get('load_from'), default_scope=cfg.get('default_scope'),
                custom_imports=_plain(cfg.get('custom_imports')))


# ------------------------------------------------------------------------------------- references
class Ref:
    """One reference to weights: ``kind`` in {'init_cfg', 'pretrained', 'teacher_ckpt', 'load_from'},
    ``path`` (keys from the model dict to the entry), the original value, and whether it sits inside
    a teacher's config (superseded by ``teacher_ckpt``)."""

    def __init__(self, kind: str, path: Tuple, value: str, in_teacher: bool = False,
                 prefix: Optional[str] = None) -> None:
        self.kind, self.path, self.value, self.in_teacher, self.prefix = (kind, path, value,
                                                                           in_teacher, prefix)
        self.token: Optional[str] = None

    def where(self) -> str:
        return 'model' + ''.join(f'[{p!r}]' if isinstance(p, str) else f'[{p}]' for p in self.path)

    def __repr__(self) -> str:
        return f'{self.kind} {self.value!r} at {self.where()}'


def find_refs(node: Any, path: Tuple = (), in_teacher: bool = False) -> List[Ref]:
    """Walk a model dict and list every weight reference in it: any ``type='Pretrained'`` dict,
    whatever key holds it (``init_cfg``, ``mlp_init_cfg``, ...), ``pretrained='...'`` strings and
    ``teacher_ckpt``."""
    refs: List[Ref] = []
    if isinstance(node, dict):
        if node.get('type') == 'Pretrained' and isinstance(node.get('checkpoint'), str):
            return [Ref('init_cfg', path + ('checkpoint', ), node['checkpoint'], in_teacher,
                        node.get('prefix'))]
        for key, value in node.items():
            sub = path + (key, )
            if key == 'pretrained' and isinstance(value, str):
                refs.append(Ref('pretrained', sub, value, in_teacher))
            elif key == 'teacher_ckpt' and value is not None:
                refs.append(Ref('teacher_ckpt', sub, value, in_teacher))
            else:
                refs.extend(find_refs(value, sub, in_teacher or key == 'teacher'))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            refs.extend(find_refs(value, path + (i, ), in_teacher))
    return refs


def _set(node: dict, path: Tuple, value: Any) -> None:
    for p in path[:-1]:
        node = node[p]
    node[path[-1]] = value


def _get(node: dict, path: Tuple) -> Any:
    for p in path:
        node = node[p]
    return node


# --------------------------------------------------------------------------------- random weights
def random_state(state: Dict[str, torch.Tensor], seed: int,
                 prefix: Optional[str] = None) -> Dict[str, torch.Tensor]:
    """Distinct random tensors with the shapes / dtypes of ``state`` (keys under ``prefix.``)."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for k, v in state.items():
        if v.dtype.is_floating_point:
            t = torch.randn(v.shape, generator=g, dtype=torch.float32).to(v.dtype)
        elif v.dtype == torch.bool:
            t = torch.randint(0, 2, v.shape, generator=g).bool()
        else:
            t = torch.randint(1, 1000, v.shape, generator=g).to(v.dtype)
        out[(prefix.rstrip('.') + '.' + k) if prefix else k] = t
    return out


def compare(module: nn.Module, file_state: Dict[str, torch.Tensor],
            prefix: Optional[str] = None) -> List[str]:
    """Tensors of ``file_state`` (keys under ``prefix.``) that ``module`` does not hold exactly."""
    own = module.state_dict()
    bad = []
    strip = (prefix.rstrip('.') + '.') if prefix else ''
    for k, v in file_state.items():
        name = k[len(strip):]
        if name not in own:
            bad.append(f'{name} (missing in the module)')
        elif own[name].shape != v.shape or not torch.equal(own[name].cpu(), v.to(own[name].dtype)):
            bad.append(name)
    return bad


# ------------------------------------------------------------------------------------- building
def _scope(default_scope):
    from mmengine.registry import DefaultScope
    return DefaultScope.overwrite_default_scope(default_scope)


def _import(custom_imports):
    if custom_imports:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**custom_imports)


def build_teacher_shapes(teacher: Any) -> Dict[str, torch.Tensor]:
    """The teacher's state dict (shapes only when the meta device works), built from its config as
    the distiller does (``load_model_config``: own scope, own data preprocessor, ``init_cfg``
    dropped)."""
    from mmengine.config import ConfigDict
    from mmengine.registry import MODELS

    from mmkd_plugins.distillers.teacher import load_model_config
    cfg = load_model_config(teacher)
    cfg.pop('init_cfg', None)
    try:
        with torch.device('meta'):
            model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    except Exception:  # some constructors compute with tensors: build on the CPU instead
        model = MODELS.build(ConfigDict(copy.deepcopy(cfg)))
    return model.state_dict()


_TEACHER_FILES: Dict[str, str] = {}


def teacher_file(teacher: Any) -> str:
    """A file of distinct random weights for a teacher config, made once per distinct teacher in a
    session (teachers are shared by several configs and are the largest models)."""
    key = json.dumps(teacher, sort_keys=True, default=str)
    if key not in _TEACHER_FILES:
        if not _TEACHER_FILES:
            root = tempfile.mkdtemp(prefix='pretrained_refs_teachers_')
            atexit.register(shutil.rmtree, root, True)
            _TEACHER_FILES['__root__'] = root
        path = osp.join(_TEACHER_FILES['__root__'], f'teacher{len(_TEACHER_FILES)}.pth')
        torch.save(dict(state_dict=random_state(build_teacher_shapes(teacher),
                                                seed=1000 + len(_TEACHER_FILES)), meta=dict()), path)
        _TEACHER_FILES[key] = path
    return _TEACHER_FILES[key]


def _modules_with_token(model: nn.Module, token: str) -> List[Tuple[str, nn.Module]]:
    """Modules whose ``init_cfg`` points at ``token`` (else those keeping it as ``pretrained``)."""
    by_cfg, by_attr = [], []
    for name, mod in model.named_modules():
        cfgs = getattr(mod, 'init_cfg', None)
        cfgs = cfgs if isinstance(cfgs, (list, tuple)) else [cfgs]
        if any(isinstance(c, dict) and c.get('type') == 'Pretrained' and c.get('checkpoint') == token
               for c in cfgs):
            by_cfg.append((name or '<model>', mod))
        elif getattr(mod, 'pretrained', None) == token:
            by_attr.append((name or '<model>', mod))
    return by_cfg or by_attr


def _hidden_modules(mod: nn.Module) -> List[nn.Module]:
    """nn.Module attributes that are not registered submodules (e.g. a distiller's frozen teachers,
    held in its ``teacher_slots``)."""
    found = [v for k, v in vars(mod).items() if isinstance(v, nn.Module) and k != '_modules']
    if isinstance(getattr(type(mod), 'teacher_slots', None), property):
        found += [slot.model for slot in mod.teacher_slots.values()]
    return found


def check_config_group(rels: List[str], entry: dict, tmpdir: str) -> List[str]:
    """Run the check for one distinct model; returns the failure messages."""
    from mmengine.config import ConfigDict
    from mmengine.registry import MODELS
    from mmengine.runner.checkpoint import load_checkpoint

    name = rels[0]
    errors: List[str] = []
    model_cfg = copy.deepcopy(entry['model'])
    refs = find_refs(model_cfg)
    _import(entry['custom_imports'])
    files: Dict[int, Dict[str, torch.Tensor]] = {}
    with _scope(entry['default_scope']):
        # 1. every reference points at a local file before anything is built
        for i, ref in enumerate(refs):
            ref.token = osp.join(tmpdir, f'ref{i}_{ref.kind}.pth')
            _set(model_cfg, ref.path, ref.token)
        for i, ref in enumerate(refs):
            if ref.kind != 'teacher_ckpt' or ref.in_teacher:
                continue
            teacher = _get(model_cfg, ref.path[:-1] + ('teacher', ))
            ref.token = teacher_file(teacher)
            _set(model_cfg, ref.path, ref.token)
            files[i] = torch.load(ref.token, mmap=True, weights_only=True)['state_dict']
        # 2. build as the Runner does
        model = MODELS.build(ConfigDict(copy.deepcopy(model_cfg)))
        # 3. files for the init_cfg / pretrained references, from the module each one reached
        targets: Dict[int, List[Tuple[str, nn.Module]]] = {}
        for i, ref in enumerate(refs):
            if ref.kind == 'teacher_ckpt' or ref.in_teacher:
                continue
            targets[i] = _modules_with_token(model, ref.token)
            if not targets[i]:
                errors.append(f'{name}: {ref} reaches no module of the built model (its weights '
                              'could never load)')
                continue
            files[i] = random_state(targets[i][0][1].state_dict(), seed=2000 + i, prefix=ref.prefix)
            torch.save(dict(state_dict=files[i], meta=dict()), ref.token)
        # 4. Runner: init_weights(), then load_from
        if hasattr(model, 'init_weights'):
            model.init_weights()
        load_state = None
        if entry['load_from']:
            load_state = random_state(model.state_dict(), seed=3000)
            path = osp.join(tmpdir, 'load_from.pth')
            torch.save(dict(state_dict=load_state, meta=dict()), path)
            load_checkpoint(model, path, map_location='cpu', strict=False,
                            revise_keys=[(r'^module\.', '')])  # as Runner.load_checkpoint
    # 5. every covered tensor equals its file
    for i, ref in enumerate(refs):
        if ref.in_teacher:
            continue
        if ref.kind == 'teacher_ckpt':
            owner = model
            for p in ref.path[:-1]:
                owner = getattr(owner, p)
            keys = set(files[i])
            teachers = [m for m in _hidden_modules(owner) + list(owner.children())
                        if set(m.state_dict()) == keys]
            if not teachers:
                errors.append(f'{name}: {ref}: no teacher module of {type(owner).__name__} holds '
                              'the checkpoint keys')
            for t in teachers[:1]:
                bad = compare(t, files[i])
                if bad:
                    errors.append(f'{name}: {ref}: the teacher differs from the file in {len(bad)} '
                                  f'of {len(files[i])} tensors, e.g. {bad[:5]}')
            continue
        if load_state is not None:  # load_from (after init_weights) supersedes init_cfg weights
            continue
        for mod_name, mod in targets.get(i, []):
            bad = compare(mod, files[i], ref.prefix)
            if bad:
                errors.append(f'{name}: {ref} -> module {mod_name} ({type(mod).__name__}): '
                              f'{len(bad)} of {len(files[i])} tensors were not loaded from the '
                              f'file, e.g. {bad[:5]}')
    if load_state is not None:
        bad = compare(model, load_state)
        if bad:
            errors.append(f'{name}: load_from: {len(bad)} of {len(load_state)} tensors differ from '
                          f'the file, e.g. {bad[:5]}')
    return errors


# ------------------------------------------------------------------------------------ the tests
@contextlib.contextmanager
def _memoized_config_lookups():
    """Parsing ~100 configs re-reads every package's model-index / metafile YAMLs for each
    ``'mmdet::'`` / ``'mmpretrain::'`` base (most of the parse time); the files do not change, so
    mmengine's reads of them are memoized while the configs are collected."""
    import mmengine.config.config as cfg_mod
    import mmengine.config.utils as cfg_utils
    saved = cfg_utils.load, cfg_mod.is_installed
    cache: Dict[str, Any] = {}

    def load(file, *args, **kwargs):
        if not isinstance(file, str) or args or kwargs:
            return saved[0](file, *args, **kwargs)
        if file not in cache:
            cache[file] = saved[0](file)
        return cache[file]
    cfg_utils.load = load
    cfg_mod.is_installed = functools.lru_cache(maxsize=None)(saved[1])
    try:
        yield
    finally:
        cfg_utils.load, cfg_mod.is_installed = saved


def _groups():
    """Distinct (model, load_from, scope) groups of all entry configs with a model, and the configs
    that do not parse: (config, exception)."""
    with _memoized_config_lookups():
        return _group_entries()


def _group_entries():
    seen: Dict[str, Tuple[List[str], dict]] = {}
    broken = []
    for rel in entry_configs():
        try:
            entry = load_entry(rel)
        except Exception as exc:
            broken.append((rel, exc))
            continue
        if not isinstance(entry['model'], dict):
            continue
        key = json.dumps([entry['model'], entry['load_from'], entry['default_scope']],
                         sort_keys=True, default=str)
        if key in seen:
            seen[key][0].append(rel)
        else:
            seen[key] = ([rel], entry)
    return list(seen.values()), broken


import mmkd_plugins  # noqa: E402,F401  (registers everything, as custom_imports would)

GROUPS, BROKEN = _groups()
WITH_REFS = [(rels, entry) for rels, entry in GROUPS if find_refs(entry['model']) or entry['load_from']]


@pytest.mark.parametrize('rel,exc', BROKEN or [(None, None)],
                         ids=[rel for rel, _ in BROKEN] or ['none'])
def test_config_parses(rel, exc):
    """A config that does not parse cannot be checked: fail, or skip when only an optional OpenMMLab
    package is missing (the error names it)."""
    if rel is None:
        assert len(entry_configs()) > 50 and GROUPS
        return
    if isinstance(exc, ModuleNotFoundError):
        pytest.skip(f'{rel}: {exc}')
    raise AssertionError(f'{rel} does not parse: {exc!r}')


def test_reference_walker_finds_every_kind():
    model = dict(type='D', teacher_ckpt='https://x/t.pth',
                 teacher=dict(type='T', backbone=dict(init_cfg=dict(type='Pretrained',
                                                                    checkpoint='a.pth'))),
                 student=dict(backbone=dict(init_cfg=[dict(type='Kaiming'),
                                                      dict(type='Pretrained', checkpoint='b.pth',
                                                           prefix='backbone')]),
                              head=dict(mlp_init_cfg=dict(type='Pretrained', checkpoint='d.pth')),
                              pretrained='open-mmlab://c'))
    refs = {(r.kind, r.value, r.in_teacher, r.prefix) for r in find_refs(model)}
    assert refs == {('teacher_ckpt', 'https://x/t.pth', False, None),
                    ('init_cfg', 'a.pth', True, None), ('init_cfg', 'b.pth', False, 'backbone'),
                    ('init_cfg', 'd.pth', False, None), ('pretrained', 'open-mmlab://c', False, None)}
    state = {'w': torch.zeros(2)}
    assert list(random_state(state, 0, 'backbone')) == ['backbone.w']
    assert not torch.equal(random_state(state, 0)['w'], random_state(state, 1)['w'])


def test_a_reference_that_never_loads_is_caught(tmp_path):
    """The check itself: an init_cfg on a backbone hidden inside a plain nn.Module is reported."""
    from mmengine.model import BaseModule
    from mmengine.registry import MODELS

    @MODELS.register_module(force=True)
    class _HiddenBackboneModel(BaseModule):
        def __init__(self, backbone, wrap_in_basemodule=False, init_cfg=None):
            super().__init__(init_cfg)
            holder = BaseModule() if wrap_in_basemodule else nn.Module()
            holder.backbone = MODELS.build(backbone)
            self.holder = holder

    backbone = dict(type='VOSTinyBackbone',
                    init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18'))
    entry = dict(model=dict(type='_HiddenBackboneModel', backbone=backbone), load_from=None,
                 default_scope=None, custom_imports=None)
    errors = check_config_group(['toy.py'], entry, str(tmp_path))
    assert len(errors) == 1 and 'holder.backbone' in errors[0] and 'not loaded' in errors[0]
    entry['model']['wrap_in_basemodule'] = True
    assert check_config_group(['toy.py'], entry, str(tmp_path)) == []
    entry['load_from'] = 'work_dirs/somewhere/iter_100.pth'  # loaded after init_weights
    assert check_config_group(['toy.py'], entry, str(tmp_path)) == []


@pytest.mark.parametrize('rels,entry', WITH_REFS,
                         ids=[f'{rels[0]}(+{len(rels) - 1})' for rels, _ in WITH_REFS])
def test_pretrained_references_load(rels, entry, tmp_path, monkeypatch):
    from mmengine.runner.checkpoint import CheckpointLoader
    original = CheckpointLoader.load_checkpoint.__func__

    def local_only(cls, filename, *args, **kwargs):  # every reference was replaced: no download
        if not osp.isfile(filename):
            raise AssertionError(f'{rels[0]}: a weight reference was not replaced by a local file '
                                 f'and would be fetched: {filename}')
        return original(cls, filename, *args, **kwargs)
    monkeypatch.setattr(CheckpointLoader, 'load_checkpoint', classmethod(local_only))
    torch.set_num_threads(1)
    try:
        errors = check_config_group(rels, entry, str(tmp_path))
    finally:  # the random weight files can be large (pytest keeps old tmp folders)
        for f in tmp_path.iterdir():
            f.unlink()
    assert not errors, '\n'.join(errors)
