# MGD: PSPNet-R101 teacher -> PSPNet-R18 student on Cityscapes, 512x512 crops, 40k iterations:
# the authors' recipe (yzd-v/MGD seg/configs/distillers/mgd/psp_r101_distill_psp_r18_40k_512x512_city.py),
# authors' README: 69.85 -> 73.63 mIoU; MGD only (`_mgd-only`): ~1.5 less in a reproduction (MGD#13).
# Student: the authors' PSPNet-R18-D8 512x512 40k recipe (_base_/pspnet_r18-d8_8xb2-40k_cityscapes-
# 512x512.py: SGD lr 0.01, poly lr, 2 images per GPU). Distillation (_base_/mgd_cityscapes-512x512.py):
# MGD on the last backbone stage (1x1 align 512 -> 2048, spatial mask lambda_mgd 0.75, alpha_mgd
# 2e-5) plus the channel-wise divergence of the decode heads' logits (tau 4, weight 3). The teacher
# runs its backbone and decode head (teacher_forward='tensor'; never its auxiliary head or losses).
#
# Teacher weights (official mmseg model zoo, 78.34 mIoU):
#   https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/
#   pspnet_r101-d8_512x1024_40k_cityscapes/
#   pspnet_r101-d8_512x1024_40k_cityscapes_20200604_232751-467e7cf4.pth
# put into checkpoints/ or set --cfg-options model.teacher_ckpt=PATH.
_base_ = ['./_base_/pspnet_r18-d8_8xb2-40k_cityscapes-512x512.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='mmseg::pspnet/pspnet_r101-d8_4xb2-40k_cityscapes-512x1024.py',
    # downloaded once into $TORCH_HOME/hub/checkpoints; offline: put the file in checkpoints/ and
    # set --cfg-options model.teacher_ckpt=checkpoints/pspnet_r101-d8_512x1024_40k_cityscapes_20200604_232751-467e7cf4.pth
    teacher_ckpt='https://download.openmmlab.com/mmsegmentation/v0.5/pspnet/pspnet_r101-d8_512x1024_40k_cityscapes/pspnet_r101-d8_512x1024_40k_cityscapes_20200604_232751-467e7cf4.pth',
    teacher_forward=_base_.mgd_seg.teacher_forward,
    student_taps=_base_.mgd_seg.taps, teacher_taps=_base_.mgd_seg.taps,
    connectors=_base_.mgd_seg.connectors, distill_losses=_base_.mgd_seg.losses)
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: mmseg model zoo, pspnet_r101-d8_4xb2-40k_cityscapes-512x1024: 78.34 mIoU.
teacher_expected = dict(metric='mIoU', value=78.34, tol=20.0)
