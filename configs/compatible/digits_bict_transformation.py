# BiCT, forward step: train psi (old 32-d embedding -> new 48-d space) with the backward-compatible new
# model frozen as the teacher and the frozen old model inside the student; then upgrade a stored old gallery
# with tools/bict_upgrade.py (no images needed). Objective 'new_classifier' (the spec's default):
# CE(W_new psi(phi_old(x)), y) through the new model's frozen classifier (teacher's head.fc), plus the
# regression with weight 0; digits_bict_transformation_regression.py trains the 'regression' objective.
# Every BiCT result is named after its objective (hot_refresh/mAP_new_bict_new_classifier, ...).
# Checkpoints (set with --cfg-options):
#   model.student.old_ckpt=<old model>   model.teacher_ckpt=<new model, plain student weights: convert a
#   distiller checkpoint with tools/convert_kd_ckpt_to_student.py>
_base_ = ['./digits_new_model.py']

model = dict(
    _delete_=True,
    type='CompatibleDistiller',
    teacher_role='new',
    student=dict(type='BiCTTransformStudent',
                 old_model='{{fileDirname}}/digits_old_model.py',
                 old_ckpt=None,
                 transformation=dict(type='BiCTTransformation', old_dim=32, new_dim=48, hidden_dim=256,
                                     num_layers=2)),
    teacher='{{fileDirname}}/digits_new_model.py',
    teacher_ckpt=None,
    teacher_forward='extract_feat',
    old_classifier=None,
    new_classifier='head.fc',
    student_taps=dict(upgraded='transformation'),
    teacher_taps=dict(emb=dict(module='neck', idx=-1)),
    distill_losses=dict(loss_bict=dict(
        type='BiCTTransformLoss', objective='new_classifier', regression_weight=0.0, kind='mse',
        loss_weight=1.0, inputs=dict(pred='student.upgraded', target='teacher.emb', labels='gt_labels'))))
optim_wrapper = dict(_delete_=True, optimizer=dict(type='Adam', lr=5e-4))
val_evaluator = dict(_delete_=True, type='HotRefreshMetric', fractions=11, order='entropy',
                     plot_file='hot_refresh.png')
test_evaluator = val_evaluator
log_level = 'INFO'   # the hot-refresh table is logged at INFO
