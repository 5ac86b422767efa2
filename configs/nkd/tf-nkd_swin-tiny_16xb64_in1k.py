# tf-NKD (teacher-free): Swin-T on ImageNet-1k (paper: 81.48, +0.30 over its baseline).
# The upstream recipe uses Mixup/CutMix, so the head sees soft labels: tf-NKD then uses the top-2
# label entries. The upstream LabelSmoothLoss is kept as the task loss.
_base_ = ['mmpretrain::swin_transformer/swin-tiny_16xb64_in1k.py']
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='TaskLossWithTfNKD',
            task_loss=_base_.model.head.loss,  # LabelSmoothLoss(0.1, mode='original')
            tf_nkd_weight=1.0)))
