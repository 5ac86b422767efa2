# MGD for ImageNet classification (official: yzd-v/MGD cls/configs/distillers/mgd/): the last
# backbone stage before global pooling of both models, a channel mask (lambda_mgd 0.15) and
# alpha_mgd 7e-5. A config adds its teacher, checkpoint, the connector's channels and
#   student_taps=_base_.mgd_cls.taps, teacher_taps=_base_.mgd_cls.taps,
#   distill_losses=_base_.mgd_cls.losses
mgd_cls = dict(
    taps=dict(feat=dict(module='backbone', idx=-1)),
    losses=dict(loss_mgd=dict(type='MGDLoss', alpha_mgd=7e-5,
                              inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat'))))
