"""Every paper config equals its recipe record (configs/<family>/recipes.py).

Each ``recipes.py`` defines ``RECIPES = {config file: {dotted key: dict(value=..., source=...)}}``
and ``NOT_PAPER_CONFIGS = {config file: reason}``. A dotted key indexes the config as mmengine
resolves it (``_base_`` and ``pkg::`` inheritance); an integer component indexes a list. Every
config file of the folder must be in exactly one of the two tables, so a new config without a
record fails here. Configs are parsed once per session (cached).
"""
import functools
import glob
import os
import os.path as osp
import re
import runpy

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIG_ROOT = osp.join(REPO, 'configs')
RECIPE_FILES = sorted(glob.glob(osp.join(CONFIG_ROOT, '**', 'recipes.py'), recursive=True))
# configs/<folder> without a recipes.py: only the demo configs (tiny digits runs, not a paper's)
FOLDERS_WITHOUT_RECIPES = {'demo'}
# folders whose record is written on another branch of the same issue; the test fails once the
# file exists, so the entry is removed when the branches meet
PENDING_FOLDERS = {}  # family folders whose record is still being written: none
_SOURCE = re.compile(r'^[\w.-]+/[\w.-]+.*: \S.*')  # '<owner>/<repo> ...: <file path> [line/field]'


def config_files(folder: str):
    """The config files of a family folder: not ``recipes.py``, not base files (``_base_/``,
    ``_*.py``), not subfolders."""
    return sorted(osp.basename(p) for p in glob.glob(osp.join(folder, '*.py'))
                  if osp.basename(p) != 'recipes.py' and not osp.basename(p).startswith('_'))


@functools.lru_cache(maxsize=None)
def load_recipes(path: str):
    tables = runpy.run_path(path)
    return tables['RECIPES'], tables['NOT_PAPER_CONFIGS']


@pytest.fixture(scope='module', autouse=True)
def _parse_each_file_once():
    """Each config file (paper configs and the ``_base_`` files they share, upstream ones
    included) is parsed by mmengine once per test module instead of once per inheriting config,
    and each ``pkg::`` base is located once: ~100 configs resolve in seconds. The parse of a file
    depends on nothing but the file (its own bases, ``{{fileDirname}}`` of itself), so its result
    is reused (deep-copied)."""
    import copy

    import mmkd_plugins  # noqa: F401  (installs its 'mmkd_plugins::' prefix before the wrap below)
    from mmengine.config import Config
    original = Config.__dict__['_file2dict']
    cache = {}

    def file2dict(filename, use_predefined_variables=True, use_environment_variables=True,
                  lazy_import=False):
        key = (osp.abspath(filename), use_predefined_variables, use_environment_variables,
               lazy_import)
        if key not in cache:
            cache[key] = original.__func__(filename, use_predefined_variables,
                                           use_environment_variables, lazy_import)
        return copy.deepcopy(cache[key])

    # where 'pkg::x.py' lives (mmengine reads the package's model index for it) is fixed too
    original_path = Config.__dict__['_get_cfg_path']
    paths = {}

    def get_cfg_path(cfg_path, filename):
        # 'pkg::x.py' does not depend on the file naming it; a relative path does
        key = cfg_path if '::' in cfg_path else (cfg_path, osp.abspath(filename))
        if key not in paths:
            paths[key] = original_path.__func__(cfg_path, filename)
        return paths[key]

    Config._file2dict = staticmethod(file2dict)
    Config._get_cfg_path = staticmethod(get_cfg_path)
    try:
        yield
    finally:
        Config._file2dict = original
        Config._get_cfg_path = original_path


@functools.lru_cache(maxsize=None)
def resolved(path: str) -> dict:
    """The config as mmengine resolves it, as plain dicts / lists (tuples become lists)."""
    from mmengine.config import Config
    return _plain(Config.fromfile(path).to_dict())


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


_MISSING = object()


def lookup(cfg, dotted: str):
    """``cfg`` at ``dotted``; an integer component indexes a list. _MISSING where it is absent."""
    node = cfg
    for part in dotted.split('.'):
        if isinstance(node, list) and re.fullmatch(r'-?\d+', part):
            index = int(part)
            if not -len(node) <= index < len(node):
                return _MISSING
            node = node[index]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return _MISSING
    return node


def test_lookup_and_plain():
    cfg = _plain(dict(a=dict(b=[dict(c=(1, 2)), 3]), d={'x.y': 1}))
    assert lookup(cfg, 'a.b.0.c') == [1, 2] and lookup(cfg, 'a.b.-1') == 3
    assert lookup(cfg, 'a.b.2') is _MISSING and lookup(cfg, 'a.z') is _MISSING
    assert lookup(cfg, 'a.b.c') is _MISSING  # a string key into a list


def test_every_config_folder_has_a_record():
    folders = {osp.relpath(osp.dirname(p), CONFIG_ROOT) for p in RECIPE_FILES}
    for rel in PENDING_FOLDERS:
        assert rel not in folders, (f'configs/{rel}/recipes.py exists now: remove {rel!r} from '
                                    'PENDING_FOLDERS in this test')
    for path in glob.glob(osp.join(CONFIG_ROOT, '**', '*.py'), recursive=True):
        rel = osp.relpath(osp.dirname(path), CONFIG_ROOT)
        if rel == '.' or any(part.startswith('_') for part in rel.split(os.sep)):
            continue
        if rel.split(os.sep)[0] in FOLDERS_WITHOUT_RECIPES or rel in PENDING_FOLDERS:
            continue
        assert rel in folders, f'configs/{rel}/ has configs but no recipes.py'


@pytest.mark.parametrize('recipes', RECIPE_FILES,
                         ids=[osp.relpath(p, CONFIG_ROOT) for p in RECIPE_FILES])
def test_every_config_is_recorded_or_excluded(recipes):
    records, excluded = load_recipes(recipes)
    folder = osp.dirname(recipes)
    files = set(config_files(folder))
    rel = osp.relpath(folder, REPO)
    both = sorted(set(records) & set(excluded))
    assert not both, f'{rel}: in both RECIPES and NOT_PAPER_CONFIGS: {both}'
    missing = sorted(files - set(records) - set(excluded))
    assert not missing, (f'{rel}: configs without a recipe record: {missing}; add them to RECIPES '
                         'in recipes.py (or to NOT_PAPER_CONFIGS with a reason)')
    stale = sorted((set(records) | set(excluded)) - files)
    assert not stale, f'{rel}/recipes.py names configs that do not exist: {stale}'
    for name, reason in excluded.items():
        assert isinstance(reason, str) and len(reason) > 10, f'{rel}/{name}: give a reason'
    for name, record in records.items():
        assert record, f'{rel}/{name}: empty record'
        for key, entry in record.items():
            assert set(entry) == {'value', 'source'}, f'{rel}/{name} {key}: {sorted(entry)}'
            assert _SOURCE.match(entry['source']), (
                f'{rel}/{name} {key}: source {entry["source"]!r} must read '
                '"<official repo>: <file path> [line/field]"')


def _paper_configs():
    out = []
    for recipes in RECIPE_FILES:
        records, _ = load_recipes(recipes)
        out += [(recipes, name) for name in sorted(records)]
    return out


@pytest.mark.parametrize('recipes,name', _paper_configs(),
                         ids=[osp.relpath(osp.join(osp.dirname(r), n), CONFIG_ROOT)
                              for r, n in _paper_configs()])
def test_resolved_config_equals_its_record(recipes, name):
    records, _ = load_recipes(recipes)
    path = osp.join(osp.dirname(recipes), name)
    wrong = differences(resolved(path), records[name])
    assert not wrong, (f'{osp.relpath(path, REPO)} differs from its recipe record:\n'
                       + '\n'.join(wrong))


def differences(cfg: dict, record: dict):
    """One line per recorded key whose resolved value differs (or is absent)."""
    wrong = []
    for key, entry in record.items():
        got = lookup(cfg, key)
        want = _plain(entry['value'])
        if got is _MISSING:
            wrong.append(f'  {key}: recorded {want!r}, resolved config has no such key '
                         f'(source: {entry["source"]})')
        elif got != want:
            wrong.append(f'  {key}: recorded {want!r}, resolved {got!r} '
                         f'(source: {entry["source"]})')
    return wrong


def test_a_drifted_config_is_reported_by_key(tmp_path):
    """A record check on a two-file config: inherited values count, drift and absence are named."""
    (tmp_path / 'base.py').write_text(
        "optim_wrapper = dict(optimizer=dict(type='SGD', lr=0.01))\n"
        "pipeline = [dict(type='Load'), dict(type='Crop', crop_size=(512, 512))]\n")
    (tmp_path / 'child.py').write_text("_base_ = ['./base.py']\n"
                                       "optim_wrapper = dict(optimizer=dict(lr=0.02))\n")
    cfg = resolved(str(tmp_path / 'child.py'))
    src = 'owner/repo: file.py lr'
    ok = {'optim_wrapper.optimizer.type': dict(value='SGD', source=src),
          'pipeline.1.crop_size': dict(value=(512, 512), source=src)}
    assert differences(cfg, ok) == []
    bad = differences(cfg, {'optim_wrapper.optimizer.lr': dict(value=0.01, source=src),
                            'pipeline.2.crop_size': dict(value=(512, 512), source=src)})
    assert bad == [f'  optim_wrapper.optimizer.lr: recorded 0.01, resolved 0.02 (source: {src})',
                   '  pipeline.2.crop_size: recorded [512, 512], resolved config has no such key '
                   f'(source: {src})']


def test_top_level_entry_configs_alias_a_recorded_config():
    """configs/*.py are short entry names: one ``_base_`` pointing at a recorded paper config."""
    for path in glob.glob(osp.join(CONFIG_ROOT, '*.py')):
        text = open(path).read()
        bases = re.findall(r"_base_ = \['\./([\w./-]+)'\]", text)
        assert len(bases) == 1, f'{path}: an entry config inherits exactly one family config'
        family, name = osp.split(bases[0])
        records, _ = load_recipes(osp.join(CONFIG_ROOT, family, 'recipes.py'))
        assert name in records, f'{path}: {bases[0]} has no recipe record'
        body = [line for line in text.splitlines() if line.strip() and not line.startswith('#')]
        assert len(body) == 1, f'{path}: an entry config only names its family config'
