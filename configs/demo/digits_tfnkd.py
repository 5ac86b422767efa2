# tf-NKD: no teacher, no distiller. The w4 student's head loss becomes cross-entropy + tf-NKD.
_base_ = ['./digits_student_resnet18_w4.py']
model = dict(
    head=dict(
        loss=dict(_delete_=True, type='TaskLossWithTfNKD', task_loss=_base_.model.head.loss,
                  tf_nkd_weight=1.0)))
