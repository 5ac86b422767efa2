# NKD: ResNet-50 teacher -> MobileNetV1 student on ImageNet-1k (paper: 69.21 -> 72.58 top-1).
# As in the authors' setting, gradients are clipped at norm 5 for this pair.
# Teacher weights: mmpretrain's resnet50_8xb32_in1k_20210831-ea4938fc, from
#   https://download.openmmlab.com/mmclassification/v0/resnet/
# into checkpoints/ (or set --cfg-options model.teacher_ckpt=PATH).
_base_ = ['./mobilenet-v1_8xb32_in1k.py', './_base_/nkd_in1k.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmpretrain::resnet/resnet50_8xb32_in1k.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/resnet50_8xb32_in1k_20210831-ea4938fc.pth
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet50_8xb32_in1k_20210831-ea4938fc.pth',
    teacher_forward='tensor',
    student_taps=_base_.nkd_in1k.taps, teacher_taps=_base_.nkd_in1k.taps,
    distill_losses=_base_.nkd_in1k.losses)
optim_wrapper = dict(clip_grad=dict(max_norm=5.0))
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmpretrain model zoo, resnet50_8xb32_in1k: 76.55 top-1.
teacher_expected = dict(metric='accuracy/top1', value=76.55, tol=10.0)
