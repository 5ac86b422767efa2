"""End-to-end compatible upgrade on real images (scikit-learn digits), CPU, through the configs.

Train an old model, then new models with BCT, RACT and UniBCT (and an independent one), a BiCT
transformation on top of the BCT model, backfill the old gallery with BackfillHook, and evaluate the
hot-refresh curve both through the metric (Runner.test) and from embedding files with the tools.
"""
import math
import os.path as osp
import sys

import pytest
import torch
from mmengine.runner import Runner

from tests.conftest import REPO

sys.path.insert(0, osp.join(REPO, 'tools'))
import backfill as backfill_tool  # noqa: E402
import bict_upgrade  # noqa: E402
import convert_kd_ckpt_to_student  # noqa: E402
import extract_embeddings  # noqa: E402
import train as train_tool  # noqa: E402

pytest.importorskip('mmpretrain')
pytest.importorskip('sklearn')

CFG = osp.join(REPO, 'configs', 'compatible')
EPOCHS = 3
SMALL = [f'{split}_dataloader.dataset.dataset.max_samples=500' for split in ('train', 'val', 'test')] + [
    'train_dataloader.batch_size=32', f'train_cfg.max_epochs={EPOCHS}', f'train_cfg.val_interval={EPOCHS}',
    f'default_hooks.checkpoint.interval={EPOCHS}', f'param_scheduler.T_max={EPOCHS}', 'log_level=WARNING']


def train_and_test(config, work_dir, *options, hooks=()):
    args = train_tool.parse_args([osp.join(CFG, config), '--work-dir', str(work_dir),
                                  '--cfg-options', *SMALL, *options])
    cfg = train_tool.build_config(args)
    cfg.custom_hooks = list(cfg.get('custom_hooks', [])) + list(hooks)
    runner = Runner.from_cfg(cfg)
    runner.train()
    metrics = runner.test()
    return str(work_dir / f'epoch_{EPOCHS}.pth'), metrics


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp('compat')
    out = dict(root=root)
    out['old'], _ = train_and_test('digits_old_model.py', root / 'old')
    # the old gallery (test split), with old-classifier logits for the entropy order
    out['old_gallery'] = extract_embeddings.main([
        osp.join(CFG, 'digits_old_model.py'), out['old'], str(root / 'old_gallery.pth'), '--no-progress',
        '--cfg-options', *SMALL])
    old = f'model.teacher_ckpt={out["old"]}'
    backfill = dict(type='BackfillHook', gallery_file=out['old_gallery'], order='entropy', num_steps=4,
                    out_dir=str(root / 'backfill'))
    # UniBCT: prototypes refreshed at the start of epochs 1 and 2 (0-based) of 3, term on from epoch 1
    extra = dict(unibct=['custom_hooks.1.epochs=[1,2]'])
    for method in ('bct', 'ract', 'unibct'):
        out[method] = train_and_test(f'digits_{method}.py', root / method, old, *extra.get(method, []),
                                     hooks=[backfill] if method == 'bct' else [])
    out['independent'] = train_and_test('digits_new_model.py', root / 'independent')
    out['bct_student'] = str(root / 'bct_student.pth')
    convert_kd_ckpt_to_student.convert(out['bct'][0], out['bct_student'])
    for name, cfg in (('bict', 'digits_bict_transformation.py'),
                      ('bict_regression', 'digits_bict_transformation_regression.py')):
        out[name] = train_and_test(cfg, root / name, f'model.student.old_ckpt={out["old"]}',
                                   f'model.teacher_ckpt={out["bct_student"]}',
                                   'optim_wrapper.optimizer.lr=0.005')
    return out


def test_every_method_gives_a_hot_refresh_curve(runs):
    for method in ('bct', 'ract', 'unibct', 'bict', 'bict_regression'):
        m = runs[method][1]
        assert all(math.isfinite(v) for v in m.values()), (method, m)
        # f = 0 is the cross-model number, f = 1 the new-model number
        assert m['hot_refresh/old_mAP@f0.00'] == pytest.approx(m['hot_refresh/mAP_new_old'])
        assert m['hot_refresh/old_mAP@f1.00'] == pytest.approx(m['hot_refresh/mAP_new_new'])
        assert m['hot_refresh/old_NFR@f0.00'] >= 0
    assert osp.getsize(next(runs['root'].glob('bct/*/hot_refresh.png'))) > 1000
    assert 'face_verif/new-old/TAR@FAR=0.1' in runs['unibct'][1]
    # every BiCT result names its objective
    assert 'hot_refresh/mAP_new_bict_new_classifier' in runs['bict'][1]
    assert 'hot_refresh/mAP_new_bict_regression' in runs['bict_regression'][1]
    assert not any(k.endswith('mAP_new_bict') for k in {**runs['bict'][1], **runs['bict_regression'][1]})


def test_compatible_training_beats_independent_upgrade(runs):
    """Few iterations, but the effect is already large: compatible training vs an independent model."""
    indep = runs['independent'][0]
    # the independent new model evaluated against the old gallery: embed both with the tools
    q = extract_embeddings.main([osp.join(CFG, 'digits_new_model.py'), indep, str(runs['root'] / 'indep.pth'),
                                 '--kind', 'new', '--no-progress', '--cfg-options', *SMALL])
    res = backfill_tool.main(['evaluate', '--query', q, '--old-gallery', runs['old_gallery'],
                              '--new-gallery', q, '--fractions', '3'])
    for method in ('bct', 'ract', 'unibct'):   # (about 0.4 against 0.2 at the time of writing)
        assert runs[method][1]['hot_refresh/mAP_new_old'] > res['table']['mAP(new,old)'] + 0.1, method
    # BiCT, both objectives: the upgraded old gallery serves new queries better than the raw old gallery
    for name, objective in (('bict', 'new_classifier'), ('bict_regression', 'regression')):
        m = runs[name][1]
        assert m[f'hot_refresh/mAP_new_bict_{objective}'] > m['hot_refresh/mAP_new_old'] + 0.05, name


def test_backfill_hook_and_tools_agree_with_the_metric(runs):
    root = runs['root']
    steps = sorted(root.glob('backfill/gallery_step*.pth'))
    assert len(steps) == 4
    new_q = extract_embeddings.main([osp.join(CFG, 'digits_bct.py'), runs['bct'][0], str(root / 'new_q.pth'),
                                     '--kind', 'new', '--no-progress', '--cfg-options', *SMALL])
    last = torch.load(str(root / 'backfill' / 'gallery_step4.pth'))
    new = torch.load(new_q)
    assert torch.equal(last['indices'], new['indices']) and (last['version'] == 1).all()
    assert torch.allclose(last['embeddings'], new['embeddings'], atol=1e-5)
    # upgrade the old gallery with the trained psi, then evaluate from files only
    up = bict_upgrade.main([runs['old_gallery'], str(root / 'bict_gallery.pth'),
                            '--transformation', runs['bict'][0]])
    old_q = runs['old_gallery']
    plot = str(root / 'files_curve.png')
    res = backfill_tool.main(['evaluate', '--query', new_q, '--old-query', old_q, '--old-gallery', old_q,
                              '--new-gallery', new_q, '--bict-gallery', up, '--order', 'entropy',
                              '--plot', plot])
    assert osp.getsize(plot) > 1000
    m = runs['bict'][1]     # the BiCT run evaluates the same models on the same split
    assert res['bict_objective'] == 'new_classifier'   # read from the training checkpoint's config
    for key in ('mAP(new,old)', 'mAP(old,old)', 'mAP(new,new)', 'mAP(new,bict_new_classifier)'):
        metric_key = 'hot_refresh/' + key.replace('(', '_').replace(',', '_').replace(')', '')
        assert res['table'][key] == pytest.approx(m[metric_key], abs=1e-4), key
    for row in res['curves']['bict_new_classifier']:
        assert row['mAP'] == pytest.approx(m[f'hot_refresh/bict_new_classifier_mAP@f{row["f"]:.2f}'],
                                           abs=1e-4)


def test_imagenet_configs_build_and_step():
    """The ImageNet configs: R50 student, frozen R18 old model (random weights), one loss step (BCT);
    the RACT / UniBCT configs differ only in the loss, run on R50 / R18-sized embeddings."""
    from mmengine.config import Config
    from mmengine.registry import MODELS, init_default_scope
    from mmpretrain.structures import DataSample
    cfgs = {m: Config.fromfile(osp.join(CFG, f'{m}_resnet50_resnet18-old_8xb32_in1k.py'))
            for m in ('bct', 'ract', 'unibct')}
    for m, cfg in cfgs.items():
        assert cfg.model.teacher_ckpt and 'mmkd_plugins' in cfg.custom_imports['imports']
        assert list(cfg.model.distill_losses) == [f'loss_{m}']
    init_default_scope('mmpretrain')
    model_cfg = cfgs['bct'].model.to_dict()    # the old model: 'mmpretrain::resnet/resnet18_8xb32_in1k.py'
    model_cfg.update(teacher_ckpt=None, allow_random_teacher=True,
                     data_preprocessor=cfgs['bct'].data_preprocessor.to_dict())
    model = MODELS.build(model_cfg)
    labels = (3, 7, 3, 999)
    data = model.data_preprocessor(dict(
        inputs=[torch.randint(0, 256, (3, 32, 32), dtype=torch.uint8) for _ in range(4)],
        data_samples=[DataSample().set_gt_label(i) for i in labels]), True)
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['distill.loss_bct']) and losses['distill.loss_bct'] > 0
    losses['distill.loss_bct'].backward()
    assert model.student.backbone.conv1.weight.grad is not None
    assert all(p.grad is None for p in model.teacher.parameters())
    new, old_emb = torch.randn(4, 2048, requires_grad=True), torch.randn(4, 512)
    loss_cfg = cfgs['ract'].model.distill_losses['loss_ract'].to_dict()
    loss_cfg.pop('inputs')
    value = MODELS.build(loss_cfg)(new=new, old=old_emb, labels=torch.tensor(labels))
    assert torch.isfinite(value) and value > 0
    # UniBCT: prototypes from the hook at the start of epochs 40 and 80 (the reference's 10 and 20 of 25)
    assert [h['epochs'] for h in cfgs['unibct'].custom_hooks if h['type'] == 'UniBCTPrototypeHook'] == [
        (40, 80)]
    loss_cfg = cfgs['unibct'].model.distill_losses['loss_unibct'].to_dict()
    assert set(loss_cfg.pop('inputs')) == {'new', 'labels'}
    unibct = MODELS.build(loss_cfg)
    unibct.set_prototypes(torch.randn(1000, 512))
    value = unibct(new=new, labels=torch.tensor(labels))
    assert torch.isfinite(value) and value > 0


def _tiny(width, num_classes, emb):
    from tests.helpers import tiny_classifier_cfg
    cfg = tiny_classifier_cfg(width, num_classes)
    cfg['neck'] = dict(type='mmpretrain.LinearNeck', in_channels=8 * width, out_channels=emb, gap_dim=2)
    cfg['head'].update(in_channels=emb)
    return cfg


def test_wrapper_binding_predict_and_errors(tmp_path):
    from mmengine.registry import MODELS
    from tests.helpers import cls_batch
    torch.manual_seed(0)
    taps = dict(student_taps=dict(emb=dict(module='neck', idx=-1)),
                teacher_taps=dict(emb=dict(module='neck', idx=-1)))
    loss = dict(loss_bct=dict(type='BCTLoss', num_classes=10,
                              inputs=dict(new='student.emb', old='teacher.emb', labels='gt_labels')))
    base = dict(type='CompatibleDistiller', student=_tiny(4, 10, 12), teacher=_tiny(2, 6, 8),
                allow_random_teacher=True, **taps)
    model = MODELS.build(dict(base, distill_losses=loss))
    assert model.distill_losses['loss_bct']._old_classifier[0] is model.teacher.head.fc
    inputs, samples = cls_batch(4, 16, 10)
    losses = model(inputs, samples, mode='loss')
    assert {'loss', 'distill.loss_bct'} <= set(losses)
    preds = model(inputs, samples, mode='predict')
    assert preds[0].new_emb.shape == (12, ) and preds[0].old_emb.shape == (8, )
    assert preds[0].old_logits.shape == (6, ) and 'pred_score' in preds[0]
    with pytest.raises(ValueError, match='use the old classifier'):
        MODELS.build(dict(base, distill_losses=loss, old_classifier=None))
    with pytest.raises(TypeError, match='must be a BiCTTransformStudent'):
        MODELS.build(dict(base, teacher_role='new'))
    with pytest.raises(ValueError, match="teacher_role must be 'old' or 'new'"):
        MODELS.build(dict(base, teacher_role='both'))


def test_bict_student_keeps_old_weights(tmp_path):
    from mmengine.registry import MODELS
    from tests.helpers import cls_batch, save_random_weights
    old_cfg = _tiny(2, 6, 8)
    old = save_random_weights(old_cfg, str(tmp_path / 'old.pth'), seed=3)
    student = MODELS.build(dict(
        type='BiCTTransformStudent', old_model=old_cfg, old_ckpt=str(tmp_path / 'old.pth'),
        transformation=dict(type='BiCTTransformation', old_dim=8, new_dim=12, hidden_dim=16)))
    student.init_weights()   # the Runner does this: the old model must keep its checkpoint weights
    for key, value in old.state_dict().items():
        assert torch.equal(student.old_model.state_dict()[key], value), key
    student.train()
    assert not student.old_model.training and student.transformation.training
    inputs, samples = cls_batch(3, 16, 6)
    preds = student(inputs, samples, mode='predict')
    assert preds[0].bict_emb.shape == (12, ) and preds[0].old_logits.shape == (6, )
    assert student(inputs, samples, mode='loss') == {}


def test_bict_distiller_binds_the_new_classifier_and_names_the_objective(tmp_path):
    """teacher_role='new': the frozen new model's head.fc is bound to BiCTTransformLoss ('new_classifier'),
    the loss equals CE(W_new psi(phi_old(x)) + b_new, y), and predictions carry the objective."""
    from mmengine.registry import MODELS
    from tests.helpers import cls_batch, save_random_weights
    torch.manual_seed(0)
    old_cfg, new_cfg = _tiny(2, 6, 8), _tiny(4, 10, 12)
    save_random_weights(old_cfg, str(tmp_path / 'old.pth'), seed=3)
    save_random_weights(new_cfg, str(tmp_path / 'new.pth'), seed=4)
    model = MODELS.build(dict(
        type='CompatibleDistiller', teacher_role='new', old_classifier=None, new_classifier='head.fc',
        student=dict(type='BiCTTransformStudent', old_model=old_cfg, old_ckpt=str(tmp_path / 'old.pth'),
                     transformation=dict(type='BiCTTransformation', old_dim=8, new_dim=12, hidden_dim=16)),
        teacher=new_cfg, teacher_ckpt=str(tmp_path / 'new.pth'), teacher_forward='extract_feat',
        student_taps=dict(upgraded='transformation'), teacher_taps=dict(emb=dict(module='neck', idx=-1)),
        distill_losses=dict(loss_bict=dict(type='BiCTTransformLoss', inputs=dict(
            pred='student.upgraded', target='teacher.emb', labels='gt_labels')))))
    fc = model.teacher.head.fc
    assert model.distill_losses['loss_bict']._new_classifier[0] is fc
    inputs, samples = cls_batch(4, 16, 10)
    losses = model(inputs, samples, mode='loss')
    with torch.no_grad():
        upgraded = model.student(inputs, mode='tensor')
        labels = torch.cat([s.gt_label for s in samples])
        ref = torch.nn.functional.cross_entropy(fc(upgraded), labels)
    assert losses['distill.loss_bict'].item() == pytest.approx(ref.item(), rel=1e-5)
    losses['distill.loss_bict'].backward()
    assert fc.weight.grad is None and model.student.transformation.mlp[0].weight.grad is not None
    preds = model(inputs, samples, mode='predict')
    assert all(p.bict_objective == 'new_classifier' for p in preds)
