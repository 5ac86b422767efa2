# tf-NKD (teacher-free): ResNet-18 on ImageNet-1k (paper: 70.76, +0.86 over its baseline).
# No distiller and no teacher: the head's loss becomes "the upstream task loss + tf-NKD".
_base_ = ['mmpretrain::resnet/resnet18_8xb32_in1k.py']
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='TaskLossWithTfNKD',
            task_loss=_base_.model.head.loss,  # mmpretrain's CrossEntropyLoss, unchanged
            tf_nkd_weight=1.0)))
