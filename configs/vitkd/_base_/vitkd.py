# ViTKD blocks (official: yzd-v/cls_KD configs/distillers/imagenet/deit-*_distill_deit-*_img.py).
# Taps (mmpretrain VisionTransformer / DeiT3): blocks 0 and 1 ("low", mimicked through one Linear
# each) and the last block after the final LayerNorm `backbone.ln1` ("high", masked generation).
# A ViTKD config adds its teacher, checkpoint, the ViTKDLoss dims and:
#   student_taps=_base_.vitkd.taps, teacher_taps=_base_.vitkd.taps, ... inputs=_base_.vitkd.inputs
# A ViTKD + NKD config inherits its ViTKD config and merges `model = _base_.vitkd.with_nkd`.
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

vitkd = dict(
    taps=dict(low0='backbone.layers.0', low1='backbone.layers.1', high='backbone.ln1'),
    inputs=dict(student_low_0='student.low0', teacher_low_0='teacher.low0',
                student_low_1='student.low1', teacher_low_1='teacher.low1',
                student_high='student.high', teacher_high='teacher.high'),
    # + NKD on the logits (tau 1.0, gamma 1.0): the teacher runs up to its logits
    with_nkd=dict(
        teacher_forward='tensor',
        student_taps=dict(logits='head.layers.head'),
        teacher_taps=dict(logits='head.layers.head'),
        distill_losses=dict(
            loss_nkd=dict(
                type='NKDLoss', tau=1.0, gamma=1.0, loss_weight=1.0,
                inputs=dict(student_logits='student.logits', teacher_logits='teacher.logits',
                            target='gt_labels')))))
