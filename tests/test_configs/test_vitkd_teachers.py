"""ViTKD configs name the teachers of the official ViTKD configs (yzd-v/cls_KD): mmpretrain's DeiT III
checkpoints pre-trained on ImageNet-21k and fine-tuned on ImageNet-1k (``..._in21k-pre_3rdparty_in1k``),
given by their official download URL.

The config values are read statically (no mmpretrain needed); with mmpretrain installed they are also
checked against mmpretrain's own model index (``.mim/configs/deit3/metafile.yml``). Nothing is
downloaded.
"""
import ast
import glob
import os.path as osp
import re

import pytest

REPO = osp.abspath(osp.join(osp.dirname(__file__), '..', '..'))
CONFIGS = sorted(p for p in glob.glob(osp.join(REPO, 'configs', 'vitkd', '*.py'))
                 if osp.basename(p) != 'recipes.py')
URL_ROOT = 'https://download.openmmlab.com/mmclassification/v0/deit3/'
# teacher size -> checkpoint of the official ViTKD configs (deit-{s3,b3,l3}_distill_deit-*_img.py)
OFFICIAL = {
    'small': 'deit3-small-p16_in21k-pre_3rdparty_in1k_20221009-dcd90827.pth',
    'base': 'deit3-base-p16_in21k-pre_3rdparty_in1k_20221009-87983ca1.pth',
    'large': 'deit3-large-p16_in21k-pre_3rdparty_in1k_20221009-d8d27084.pth',
}


def _teacher_file(path):
    """The config file that names the teacher: ``path`` itself, or (ViTKD + NKD configs, which
    inherit their ViTKD config) the local ``_base_`` file, followed until a ``model = dict(...)``
    with ``teacher`` is found."""
    tree = ast.parse(open(path).read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == 'model' for t in node.targets):
            if isinstance(node.value, ast.Call) and any(
                    kw.arg == 'teacher' for kw in node.value.keywords):
                return path, node.value
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == '_base_' for t in node.targets):
            local = [b for b in ast.literal_eval(node.value) if b.startswith('./')]
            assert len(local) == 1, f'{path}: no model = dict(teacher=...) and no local _base_'
            return _teacher_file(osp.join(osp.dirname(path), local[0]))
    raise AssertionError(f'{path}: no model = dict(...)')


def _model_kwargs(path):
    """``teacher`` and ``teacher_ckpt`` of the config's ``model = dict(...)``, read with ast."""
    _, call = _teacher_file(path)
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords
            if kw.arg in ('teacher', 'teacher_ckpt')}


def test_six_vitkd_configs():
    assert len(CONFIGS) == 6, CONFIGS


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_teacher_is_official_in21k_checkpoint(path):
    size = re.search(r'deit3-(small|base|large)_', osp.basename(path)).group(1)
    kwargs = _model_kwargs(path)
    assert kwargs['teacher'] == f'mmpretrain::deit3/deit3-{size}-p16_64xb64_in1k.py'
    assert kwargs['teacher_ckpt'] == URL_ROOT + OFFICIAL[size]
    assert '_in21k-pre_3rdparty_in1k_' in kwargs['teacher_ckpt']
    # the config says how to run offline: the same file name as a local path
    assert f'model.teacher_ckpt=checkpoints/{OFFICIAL[size]}' in open(_teacher_file(path)[0]).read()


def _deit3_metafile():
    mmpretrain = pytest.importorskip('mmpretrain')
    path = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'configs', 'deit3', 'metafile.yml')
    if not osp.isfile(path):
        pytest.skip(f'mmpretrain installed without its model index ({path})')
    yaml = pytest.importorskip('yaml')
    with open(path) as f:
        return yaml.safe_load(f)['Models']


@pytest.mark.parametrize('path', CONFIGS, ids=[osp.basename(c) for c in CONFIGS])
def test_teacher_matches_mmpretrain_model_index(path):
    models = _deit3_metafile()
    kwargs = _model_kwargs(path)
    hits = [m for m in models if m.get('Weights') == kwargs['teacher_ckpt']]
    assert len(hits) == 1, f'{kwargs["teacher_ckpt"]} is not in mmpretrain\'s DeiT III index'
    entry = hits[0]
    assert entry['Name'].endswith('-p16_in21k-pre_3rdparty_in1k'), entry['Name']
    assert 'ImageNet-21k' in entry['Metadata']['Training Data']
    # the teacher architecture config is the one mmpretrain lists for these weights
    assert 'mmpretrain::' + entry['Config'][len('configs/'):] == kwargs['teacher']
