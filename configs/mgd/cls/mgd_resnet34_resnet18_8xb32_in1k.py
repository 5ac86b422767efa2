# MGD for classification: ResNet-34 teacher -> ResNet-18 student on ImageNet-1k
# (paper: 69.90 -> 71.69 top-1). Distilled feature: the last backbone stage before global pooling
# (512 channels for both); channel mask (lambda_mgd 0.15), alpha_mgd 7e-5. The student recipe is
# mmpretrain's, inherited unchanged; the head keeps its cross-entropy.
# Teacher weights: mmpretrain's resnet34_8xb32_in1k_20210831-f257d4e6, from
#   https://download.openmmlab.com/mmclassification/v0/resnet/
# into checkpoints/ (or set --cfg-options model.teacher_ckpt=PATH).
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py', './_base_/mgd_cls.py']
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmpretrain::resnet/resnet34_8xb32_in1k.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/resnet34_8xb32_in1k_20210831-f257d4e6.pth
    teacher_ckpt='https://download.openmmlab.com/mmclassification/v0/resnet/resnet34_8xb32_in1k_20210831-f257d4e6.pth',
    teacher_forward='extract_feat',
    student_taps=_base_.mgd_cls.taps, teacher_taps=_base_.mgd_cls.taps,
    connectors=dict(mgd=dict(type='MGDConnector', student_channels=512,
                             teacher_channels=512, lambda_mgd=0.15, mask_type='channel')),
    distill_losses=_base_.mgd_cls.losses)
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmpretrain model zoo, resnet34_8xb32_in1k: 73.62 top-1.
teacher_expected = dict(metric='accuracy/top1', value=73.62, tol=10.0)
