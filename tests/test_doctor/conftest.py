"""Fixtures of the doctor tests: a real teacher trained on the digits data (once per session) and
distillation configs written around it."""
import os.path as osp
import textwrap

import pytest

from tests.conftest import REPO

DEMO = osp.join(REPO, 'configs', 'demo')
TEACHER_EPOCHS = 3


@pytest.fixture(scope='session')
def trained_teacher(tmp_path_factory):
    """The demo's ResNet-18 w16 teacher trained 3 epochs on the 1347 digits train images.

    Returns ``dict(ckpt=path, top1=accuracy on the 450 test images, random_ckpt=path)``; the
    random checkpoint holds the same architecture, freshly initialised (same keys, no training).
    """
    pytest.importorskip('mmpretrain')
    pytest.importorskip('sklearn')
    import torch
    from mmengine.config import Config
    from mmengine.registry import MODELS
    from mmengine.runner import Runner
    work = tmp_path_factory.mktemp('digits_teacher')
    cfg = Config.fromfile(osp.join(DEMO, 'digits_teacher_resnet18.py'))
    cfg.work_dir = str(work)
    cfg.train_cfg.update(max_epochs=TEACHER_EPOCHS, val_interval=TEACHER_EPOCHS)
    cfg.param_scheduler.T_max = TEACHER_EPOCHS
    cfg.default_hooks.checkpoint.interval = TEACHER_EPOCHS
    cfg.visualizer = dict(type='Visualizer', name=f'doctor_teacher_{id(cfg)}',
                          vis_backends=[dict(type='LocalVisBackend')])
    runner = Runner.from_cfg(cfg)
    runner.train()
    top1 = float(runner.val_loop.run()['accuracy/top1'])
    ckpt = osp.join(str(work), f'epoch_{TEACHER_EPOCHS}.pth')
    torch.manual_seed(123)
    fresh = MODELS.build(cfg.model)
    fresh.init_weights()
    random_ckpt = osp.join(str(work), 'random_teacher.pth')
    torch.save(dict(state_dict=fresh.state_dict(), meta=dict()), random_ckpt)
    return dict(ckpt=ckpt, top1=top1, random_ckpt=random_ckpt)


def distill_config_text(ckpt: str, top1: float, extra: str = '', teacher: str = None) -> str:
    """MGD on the last stage + NKD on the logits, from the digits teacher into the w4 student,
    with the trained teacher's accuracy declared as ``teacher_expected``."""
    teacher = teacher or osp.join(DEMO, 'digits_teacher_resnet18.py')
    return textwrap.dedent(f'''\
        _base_ = [{osp.join(DEMO, 'digits_student_resnet18_w4.py')!r}]
        model = dict(
            _delete_=True,
            type='SingleTeacherDistiller',
            student=_base_.model,
            teacher={teacher!r},
            teacher_ckpt={ckpt!r},
            teacher_forward='tensor',
            student_taps=dict(feat=dict(module='backbone', idx=-1), logits='head.fc'),
            teacher_taps=dict(feat=dict(module='backbone', idx=-1), logits='head.fc'),
            connectors=dict(mgd=dict(type='MGDConnector', student_channels=32,
                                     teacher_channels=128, lambda_mgd=0.15, mask_type='channel')),
            distill_losses=dict(
                loss_mgd=dict(type='MGDLoss', alpha_mgd=3e-3,
                              inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat')),
                loss_nkd=dict(type='NKDLoss', tau=1.0, gamma=1.5,
                              inputs=dict(student_logits='student.logits',
                                          teacher_logits='teacher.logits', target='gt_labels'))))
        teacher_expected = dict(metric='accuracy/top1', value={top1:.2f}, tol=10.0)
        val_dataloader = dict(batch_size=64)
        ''') + textwrap.dedent(extra)


@pytest.fixture
def write_config(tmp_path, trained_teacher):
    """``write_config(extra='', name='cfg.py', ckpt=None, teacher=None) -> path``."""
    def write(extra: str = '', name: str = 'cfg.py', ckpt: str = None, teacher: str = None) -> str:
        path = tmp_path / name
        path.write_text(distill_config_text(ckpt or trained_teacher['ckpt'],
                                            trained_teacher['top1'], extra, teacher))
        return str(path)
    return write
