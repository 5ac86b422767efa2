custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

# MGD distiller blocks for FPN detectors (official: yzd-v/MGD det/configs/distillers/mgd/):
# one tap per FPN output (neck output i, 256 channels), one MGDConnector (spatial mask, its own
# generation block) and one MGDLoss per level. A config picks a block and states only what differs:
#   student_taps=_base_.mgd_fpn5.taps, teacher_taps=_base_.mgd_fpn5.taps,
#   connectors=_base_.mgd_fpn5.connectors, distill_losses=_base_.mgd_fpn5.losses


def _mgd_fpn(levels, lambda_mgd, alpha_mgd):
    return dict(
        taps={f'fpn{i}': dict(module='neck', idx=i) for i in range(levels)},
        connectors={f'mgd{i}': dict(type='MGDConnector', student_channels=256,
                                    teacher_channels=256, lambda_mgd=lambda_mgd)
                    for i in range(levels)},
        losses={f'loss_mgd_fpn{i}': dict(type='MGDLoss', alpha_mgd=alpha_mgd,
                                         inputs=dict(preds_S=f'mgd{i}(student.fpn{i})',
                                                     preds_T=f'teacher.fpn{i}'))
                for i in range(levels)})


# RetinaNet, RepPoints: all 5 FPN outputs, lambda_mgd 0.65, alpha_mgd 2e-5
mgd_fpn5 = _mgd_fpn(5, 0.65, 2e-5)
# SOLO: the first 4 FPN outputs, lambda_mgd 0.65, alpha_mgd 2e-5
mgd_fpn4 = _mgd_fpn(4, 0.65, 2e-5)
# Faster / Mask R-CNN: P2-P5 (the first 4 outputs), lambda_mgd 0.45, alpha_mgd 5e-7
mgd_fpn4_rcnn = _mgd_fpn(4, 0.45, 5e-7)
