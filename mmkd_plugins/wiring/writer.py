"""Write the distillation config of a wired pair (a short diff that inherits the student's config).

The loss weights are the papers', as this project's paper configs set them (``PAPER_WEIGHTS``
names the config each entry comes from; a test keeps them equal).
"""
import os.path as osp
from typing import Any, Dict, List, Optional, Tuple

from .pairing import Pair
from .probe import Probe

# (method, setting) -> the paper config it is read from and its weights
PAPER_WEIGHTS: Dict[Tuple[str, str], Dict[str, Any]] = {
    ('mgd', 'det'): dict(source='mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py',
                         alpha_mgd=2e-5, lambda_mgd=0.65, mask_type='spatial'),
    ('mgd', 'det_two_stage'): dict(
        source='mgd/mgd_cascade-mask-rcnn-x101-dconv_faster-rcnn-r50_fpn_2x_coco.py',
        alpha_mgd=5e-7, lambda_mgd=0.45, mask_type='spatial'),
    ('mgd', 'seg'): dict(source='mgd/mgd_pspnet-r101_pspnet-r18-d8_8xb2-40k_cityscapes-512x512.py',
                         alpha_mgd=2e-5, lambda_mgd=0.75, mask_type='spatial'),
    ('mgd', 'cls'): dict(source='mgd/cls/mgd_resnet50_mobilenet-v1_8xb32_in1k.py',
                         alpha_mgd=7e-5, lambda_mgd=0.15, mask_type='channel'),
    ('vitkd', 'cls'): dict(source='vitkd/vitkd_deit3-small_deit-tiny_4xb256_in1k.py',
                           alpha_vitkd=3e-5, beta_vitkd=3e-6, lambda_vitkd=0.5),
    ('nkd', 'cls'): dict(source='nkd/nkd_resnet50_mobilenet-v1_8xb32_in1k.py',
                         tau=1.0, gamma=1.5, loss_weight=1.0),
}


def paper_setting(method: str, student: Probe) -> str:
    if method == 'mgd' and student.task == 'det':
        return 'det_two_stage' if student.two_stage else 'det'
    if method == 'mgd':
        return student.task if student.task in ('seg', 'cls') else 'cls'
    return 'cls'


# ---------------------------------------------------------------------------- rendering
def render(value: Any, indent: int = 0) -> str:
    """Python source of ``value`` with dicts as ``dict(k=v, ...)``, one key a line when long."""
    if isinstance(value, dict):
        if not value:
            return 'dict()'
        items = [f'{k}={render(v, indent + 4)}' for k, v in value.items()]
        one = 'dict(' + ', '.join(items) + ')'
        if len(one) + indent <= 96 and '\n' not in one:
            return one
        pad = ' ' * (indent + 4)
        return 'dict(\n' + ',\n'.join(pad + i for i in items) + ')'
    if isinstance(value, (list, tuple)):
        inner = ', '.join(render(v, indent) for v in value)
        return f'[{inner}]' if isinstance(value, list) else f'({inner}{"," if len(value) == 1 else ""})'
    if isinstance(value, float):
        return repr(value) if 1e-3 <= abs(value) < 1e4 or value == 0 else f'{value:g}'
    return repr(value)


def _needs_own_preprocessing(student: Probe, teacher: Probe) -> List[str]:
    """Why the teacher should preprocess the raw batch itself (empty: the student's inputs do)."""
    keys = ('type', 'mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr', 'to_rgb', 'pad_size_divisor')
    s, t = student.preprocessor, teacher.preprocessor
    why = [f'{k} {s.get(k)!r} vs {t.get(k)!r}' for k in keys
           if k in s or k in t if s.get(k) != t.get(k) and k != 'type']
    return why


def _resample_cfg(pair: Pair) -> Optional[dict]:
    if pair.scale is not None:
        return dict(type='FeatureResample', scale_factor=float(pair.scale))
    if pair.grid is not None:
        return dict(type='FeatureResample', size=list(pair.grid), tokens=True,
                    num_prefix_tokens=pair.teacher.prefix_tokens)
    return None


def method_parts(method: str, pairs: List[Pair], student: Probe, teacher: Probe
                 ) -> Tuple[dict, dict, str]:
    """(connectors, distill_losses, teacher_forward) of ``method`` for ``pairs``."""
    w = PAPER_WEIGHTS[(method, paper_setting(method, student))]
    connectors: Dict[str, dict] = {}
    losses: Dict[str, dict] = {}

    def teacher_src(pair: Pair) -> str:
        rs = _resample_cfg(pair)
        if rs is None:
            return f'teacher.{pair.name}'
        connectors[f'rs_{pair.name}'] = rs
        return f'rs_{pair.name}(teacher.{pair.name})'

    if method == 'mgd':
        for i, p in enumerate(pairs):
            conn = f'mgd{i}' if len(pairs) > 1 else 'mgd'
            connectors[conn] = dict(type='MGDConnector', student_channels=p.student.channels,
                                    teacher_channels=p.teacher.channels,
                                    lambda_mgd=w['lambda_mgd'], mask_type=w['mask_type'])
            key = f'loss_mgd_{p.name}' if len(pairs) > 1 else 'loss_mgd'
            losses[key] = dict(type='MGDLoss', alpha_mgd=w['alpha_mgd'],
                               inputs=dict(preds_S=f'{conn}(student.{p.name})',
                                           preds_T=teacher_src(p)))
        return connectors, losses, 'extract_feat' if student.task != 'cls' else 'backbone'
    if method == 'vitkd':
        low = [p for p in pairs if p.name.startswith('low')]
        high = next(p for p in pairs if p.name == 'high')
        inputs = {}
        for k, p in enumerate(low):
            inputs[f'student_low_{k}'] = f'student.{p.name}'
            inputs[f'teacher_low_{k}'] = teacher_src(p)
        inputs.update(student_high='student.high', teacher_high=teacher_src(high))
        losses['loss_vitkd'] = dict(
            type='ViTKDLoss', student_dims=high.student.channels,
            teacher_dims=high.teacher.channels, alpha_vitkd=w['alpha_vitkd'],
            beta_vitkd=w['beta_vitkd'], lambda_vitkd=w['lambda_vitkd'], num_low_layers=len(low),
            student_prefix_tokens=high.student.prefix_tokens,
            teacher_prefix_tokens=high.teacher.prefix_tokens, inputs=inputs)
        return connectors, losses, 'backbone'
    p = pairs[0]
    losses['loss_nkd'] = dict(type='NKDLoss', tau=w['tau'], gamma=w['gamma'],
                              loss_weight=w['loss_weight'],
                              inputs=dict(student_logits='student.logits',
                                          teacher_logits='teacher.logits', target='gt_labels'))
    return connectors, losses, 'tensor'


def _config_ref(config: str, out_dir: str) -> str:
    if '::' in config:
        return config
    return osp.relpath(osp.abspath(config), osp.abspath(out_dir or '.'))


def write_config(method: str, where: str, pairs: List[Pair], student: Probe, teacher: Probe,
                 out_dir: str = '.', teacher_ckpt: Optional[str] = None,
                 teacher_input_size: Optional[Tuple[int, int]] = None) -> str:
    """The text of the distillation config."""
    connectors, losses, forward = method_parts(method, pairs, student, teacher)
    setting = paper_setting(method, student)
    w = PAPER_WEIGHTS[(method, setting)]
    own = _needs_own_preprocessing(student, teacher)
    model: Dict[str, Any] = dict(
        _delete_=True, type='SingleTeacherDistiller', student='__STUDENT__',
        teacher=_config_ref(teacher.config, out_dir), teacher_ckpt=teacher_ckpt,
        teacher_forward=forward)
    if own or teacher_input_size:
        model['teacher_data_preprocessor'] = 'teacher'
    if teacher_input_size:
        model['teacher_input_size'] = list(teacher_input_size)
    model['student_taps'] = {p.name: p.student.tap() for p in pairs}
    model['teacher_taps'] = {p.name: p.teacher.tap() for p in pairs}
    if connectors:
        model['connectors'] = connectors
    model['distill_losses'] = losses
    lines = [f'# Generated by mmkd-wire --method {method} --where {where}',
             f'#   student: {student.config} ({student.describe()})',
             f'#   teacher: {teacher.config} ({teacher.describe()})',
             f'# probed on one synthetic batch, student input {student.input_size[0]}x'
             f'{student.input_size[1]}, teacher input {teacher.input_size[0]}x'
             f'{teacher.input_size[1]}:']
    for p in pairs:
        how = ''
        if p.scale is not None:
            how = f'  (teacher resampled x{p.scale:g})'
        elif p.grid is not None:
            how = f'  (teacher tokens resampled to {p.grid[0]}x{p.grid[1]})'
        lines.append(f'#   {p.name}: student {p.student.label} {p.student.shape} <- teacher '
                     f'{p.teacher.label} {p.teacher.shape}{how}')
    weights = ', '.join(f'{k} {v}' for k, v in w.items() if k != 'source')
    lines.append(f"# paper weights ({weights}) from configs/{w['source']}")
    if own:
        lines.append(f"# the teacher preprocesses the raw batch itself: {'; '.join(own)}")
    if teacher_ckpt is None:
        lines.append('# set the teacher checkpoint: --cfg-options model.teacher_ckpt=PATH_OR_URL')
    lines += [f"_base_ = ['{_config_ref(student.config, out_dir)}']",
              "custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)",
              '',
              'model = ' + render(model).replace("'__STUDENT__'", '_base_.model')]
    if method == 'vitkd':
        lines.append("optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.mask_token': "
                     "dict(decay_mult=0.0)}))")
    return '\n'.join(lines) + '\n'
