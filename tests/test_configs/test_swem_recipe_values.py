"""configs/swem/recipes.py: every SWEM config is recorded, and each recorded value equals the
resolved config (mmengine ``Config.fromfile``, ``_base_`` resolved; tuples compared as lists)."""
import glob
import os.path as osp
import re
import runpy

import pytest
from mmengine.config import Config

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
SWEM = osp.join(REPO, 'configs', 'swem')
TABLES = runpy.run_path(osp.join(SWEM, 'recipes.py'))
RECIPES, NOT_PAPER = TABLES['RECIPES'], TABLES['NOT_PAPER_CONFIGS']


def _plain(obj):
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def _at(cfg, dotted):
    node = cfg
    for part in dotted.split('.'):
        if isinstance(node, list) and re.fullmatch(r'\d+', part) and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            raise KeyError(f'{dotted}: no "{part}"')
    return node


def test_every_swem_config_is_recorded():
    files = {osp.basename(p) for p in glob.glob(osp.join(SWEM, '*.py'))} - {'recipes.py'}
    assert files == set(RECIPES) | set(NOT_PAPER) and not set(RECIPES) & set(NOT_PAPER)
    for record in RECIPES.values():
        for key, entry in record.items():
            assert set(entry) == {'value', 'source'}, key
            assert entry['source'].startswith('lmm077/SWEM: '), (key, entry['source'])


@pytest.mark.parametrize('name', sorted(RECIPES))
def test_resolved_config_equals_record(name):
    cfg = _plain(Config.fromfile(osp.join(SWEM, name)).to_dict())
    wrong = {k: (e['value'], _at(cfg, k)) for k, e in RECIPES[name].items()
             if _plain(e['value']) != _at(cfg, k)}
    assert not wrong, wrong
    # the record covers what the issue asks for: data scale / crop, batch, optimizer, schedule, losses
    keys = ' '.join(RECIPES[name])
    for needed in ('crop_size', 'base_batch_size', 'optimizer.lr', 'weight_decay', 'max_iters',
                   'milestones', 'loss_ce', 'loss_iou'):
        assert needed in keys, (name, needed)


def test_a_drifted_value_is_caught():
    cfg = _plain(Config.fromfile(osp.join(SWEM, 'swem_r50_8xb1-150k_davis17-ytvos19-384.py')).to_dict())
    cfg['param_scheduler'][0]['milestones'] = [120000]
    rec = RECIPES['swem_r50_8xb1-150k_davis17-ytvos19-384.py']['param_scheduler.0.milestones']
    assert _plain(rec['value']) != _at(cfg, 'param_scheduler.0.milestones')
    with pytest.raises(KeyError, match='no "9"'):
        _at(cfg, 'param_scheduler.9.milestones')
