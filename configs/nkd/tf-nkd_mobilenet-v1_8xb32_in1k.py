# tf-NKD (teacher-free): MobileNetV1 on ImageNet-1k (paper: 70.04, +0.83 over its baseline).
_base_ = ['./mobilenet-v1_8xb32_in1k.py']

model = dict(
    head=dict(
        loss=dict(
            _delete_=True,
            type='TaskLossWithTfNKD',
            task_loss=_base_.model.head.loss,
            tf_nkd_weight=1.0)))
