"""tools/extract_embeddings.py, tools/bict_upgrade.py and tools/backfill.py on tiny real data."""
import json
import os.path as osp
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import backfill as backfill_tool  # noqa: E402
import bict_upgrade  # noqa: E402
import extract_embeddings  # noqa: E402

from mmkd_plugins.engine.hooks.backfill import backfill_order, backfill_steps  # noqa: E402
from mmkd_plugins.models.compatible import load_embeddings, save_embeddings  # noqa: E402
from mmkd_plugins.models.compatible.embed import build_embedding_model  # noqa: E402

pytest.importorskip('mmpretrain')
pytest.importorskip('sklearn')

CFG = osp.join(REPO, 'configs', 'compatible')
OPTS = ['--cfg-options', 'test_dataloader.dataset.dataset.max_samples=150',
        'test_dataloader.batch_size=16']


def _random_ckpt(config, path, seed):
    torch.manual_seed(seed)
    model = build_embedding_model(osp.join(CFG, config), None)   # default (random) initialisation
    torch.save(dict(state_dict=model.state_dict()), path)
    return str(path)


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('tools')
    old_ckpt = _random_ckpt('digits_old_model.py', root / 'old.pth', 0)
    new_ckpt = _random_ckpt('digits_new_model.py', root / 'new.pth', 1)
    old = extract_embeddings.main([osp.join(CFG, 'digits_old_model.py'), old_ckpt, str(root / 'g_old.pth'),
                                   *OPTS])
    new = extract_embeddings.main([osp.join(CFG, 'digits_new_model.py'), new_ckpt, str(root / 'g_new.pth'),
                                   '--kind', 'new', '--no-logits', '--no-progress', *OPTS])
    return dict(root=root, old_ckpt=old_ckpt, new_ckpt=new_ckpt, old=old, new=new)


def test_extract_embeddings_file(files, capsys):
    old, new = load_embeddings(files['old']), load_embeddings(files['new'])
    n = old['embeddings'].shape[0]
    assert n == 30 and old['embeddings'].shape[1] == 32 and new['embeddings'].shape[1] == 48
    assert old['logits'].shape == (n, 5) and 'logits' not in new
    assert torch.equal(old['indices'], torch.arange(n)) and torch.equal(old['labels'], new['labels'])
    assert (old['version'] == 0).all() and (new['version'] == 1).all()
    assert old['meta']['split'] == 'test'
    with pytest.raises(FileNotFoundError, match='checkpoint not found'):
        extract_embeddings.main([osp.join(CFG, 'digits_old_model.py'), 'missing.pth', 'x.pth', *OPTS])


def test_bict_upgrade_fit_and_apply(files, tmp_path):
    psi_path, out = str(tmp_path / 'psi.pth'), str(tmp_path / 'up.pth')
    bict_upgrade.main([files['old'], out, '--fit-old', files['old'], '--fit-new', files['new'],
                       '--objective', 'regression', '--hidden-dim', '64', '--epochs', '200', '--lr', '0.01',
                       '--save-transformation', psi_path])
    old, new, up = (load_embeddings(p) for p in (files['old'], files['new'], out))
    assert up['embeddings'].shape == new['embeddings'].shape and (up['version'] == 2).all()
    assert up['meta']['bict_objective'] == 'regression'   # named in the file and every result
    assert torch.equal(up['logits'], old['logits'])     # old uncertainty kept for backfilling
    # fitting moved psi(old) much closer to the new embeddings than the untrained psi (same seed, 0 epochs)
    start = str(tmp_path / 'start.pth')
    bict_upgrade.main([files['old'], start, '--fit-old', files['old'], '--fit-new', files['new'],
                       '--objective', 'regression', '--hidden-dim', '64', '--epochs', '0'])
    err = ((up['embeddings'] - new['embeddings']) ** 2).mean()
    assert err < 0.2 * ((load_embeddings(start)['embeddings'] - new['embeddings']) ** 2).mean()
    # the saved transformation reproduces the file
    out2 = str(tmp_path / 'up2.pth')
    bict_upgrade.main([files['old'], out2, '--transformation', psi_path])
    assert torch.allclose(load_embeddings(out2)['embeddings'], up['embeddings'], atol=1e-6)
    assert load_embeddings(out2)['meta']['bict_objective'] == 'regression'
    never = str(tmp_path / 'never.pth')   # out2 exists now: replacing it would need --force
    with pytest.raises(SystemExit, match='trained with objective'):
        bict_upgrade.main([files['old'], never, '--transformation', psi_path, '--objective', 'new_classifier'])
    with pytest.raises(SystemExit, match='give either --transformation'):
        bict_upgrade.main([files['old'], never])
    with pytest.raises(SystemExit, match='needs --new-checkpoint'):
        bict_upgrade.main([files['old'], never, '--fit-old', files['old']])
    with pytest.raises(SystemExit, match='only old rows'):
        bict_upgrade.main([files['new'], never, '--transformation', psi_path])
    assert not osp.exists(never)


def test_bict_upgrade_new_classifier_objective(files, tmp_path, capsys):
    """Default objective 'new_classifier': psi trained through the new model's frozen classifier (read
    from its checkpoint); the objective names the upgraded file and the evaluation's BiCT entries."""
    # the random-init old model embeds every image almost identically: use separable old embeddings
    old = load_embeddings(files['old'])
    g = torch.Generator().manual_seed(0)
    sep = torch.eye(32)[old['labels']] * 2 + 0.1 * torch.randn(len(old['labels']), 32, generator=g)
    fit_old = str(tmp_path / 'fit_old.pth')
    save_embeddings(fit_old, sep, old['labels'], indices=old['indices'])
    out = str(tmp_path / 'up_cls.pth')
    bict_upgrade.main([files['old'], out, '--fit-old', fit_old, '--new-checkpoint', files['new_ckpt'],
                       '--hidden-dim', '64', '--epochs', '100', '--lr', '0.01', '--save-transformation',
                       str(tmp_path / 'psi_cls.pth')])
    up = load_embeddings(out)
    assert up['meta']['bict_objective'] == 'new_classifier' and up['embeddings'].shape[1] == 48
    from mmkd_plugins.models.compatible import load_transformation
    psi = load_transformation(str(tmp_path / 'psi_cls.pth'))
    assert psi.objective == 'new_classifier'
    state = torch.load(files['new_ckpt'])['state_dict']
    with torch.no_grad():
        logits = psi(sep) @ state['head.fc.weight'].t() + state['head.fc.bias']
    assert (logits.argmax(1) == old['labels']).float().mean() > 0.9   # fitted through the classifier
    res = backfill_tool.main(['evaluate', '--query', files['new'], '--old-query', files['old'],
                              '--old-gallery', files['old'], '--new-gallery', files['new'],
                              '--bict-gallery', out, '--fractions', '3'])
    assert res['bict_objective'] == 'new_classifier'
    assert 'mAP(new,bict_new_classifier)' in res['table'] and 'bict_new_classifier' in res['curves']
    assert 'bict_new_classifier' in capsys.readouterr().out


def test_backfill_run_in_entropy_order(files, tmp_path):
    out_dir = str(tmp_path / 'bf')
    paths = backfill_tool.main(['run', osp.join(CFG, 'digits_new_model.py'), files['new_ckpt'], files['old'],
                                out_dir, '--steps', '3', '--no-progress', *OPTS])
    assert [osp.basename(p) for p in paths] == [f'gallery_step{k}.pth' for k in (1, 2, 3)]
    old, new = load_embeddings(files['old']), load_embeddings(files['new'])
    order = backfill_order(30, 'entropy', old['logits'])
    steps = backfill_steps(order, 3)
    with open(osp.join(out_dir, 'schedule.json')) as f:
        sched = json.load(f)
    assert sched['steps'] == [s.tolist() for s in steps]
    done = np.zeros(30, bool)
    for k, path in enumerate(paths):
        g = load_embeddings(path)
        done[steps[k]] = True
        assert g['version'].tolist() == done.astype(int).tolist()
        assert torch.allclose(g['embeddings'][done], new['embeddings'][done], atol=1e-5)
        # rows still old: the old embedding, zero-padded to the new width
        assert torch.equal(g['embeddings'][~done][:, :32], old['embeddings'][~done])
        assert (g['embeddings'][~done][:, 32:] == 0).all()


def test_backfill_evaluate_aligns_rows_by_index(files, tmp_path, capsys):
    new = load_embeddings(files['new'])
    perm = torch.randperm(30, generator=torch.Generator().manual_seed(0))
    shuffled = str(tmp_path / 'shuffled.pth')
    save_embeddings(shuffled, new['embeddings'][perm], new['labels'][perm], indices=new['indices'][perm],
                    version=new['version'][perm])
    args = ['evaluate', '--query', files['new'], '--old-gallery', files['old'], '--old-query', files['old'],
            '--order', 'random', '--fractions', '5']
    a = backfill_tool.main(args + ['--new-gallery', files['new']])
    b = backfill_tool.main(args + ['--new-gallery', shuffled])
    assert a['table'] == b['table'] and a['curves'] == b['curves']
    printed = capsys.readouterr().out
    assert 'hot-refresh, not-yet-backfilled rows = old' in printed
    assert f"{a['table']['mAP(new,old)']:.4f}" in printed
    # f = 1 with the new gallery: the new-new number; f = 0: the new-old number
    assert a['curves']['old'][-1]['mAP'] == pytest.approx(a['table']['mAP(new,new)'])
    assert a['curves']['old'][0]['mAP'] == pytest.approx(a['table']['mAP(new,old)'])
    partial = str(tmp_path / 'partial.pth')
    save_embeddings(partial, new['embeddings'][:20], new['labels'][:20], indices=new['indices'][:20])
    with pytest.raises(KeyError, match='--new-gallery .*partial.pth lacks 10 of the reference items'):
        backfill_tool.main(args + ['--new-gallery', partial])
    with pytest.raises(FileNotFoundError, match='embedding file not found'):
        backfill_tool.main(['evaluate', '--query', 'nope.pth', '--old-gallery', files['old'],
                            '--new-gallery', files['new']])
