# Shared part of the compatible-training configs: the new model (digits_new_model.py) is the student of a
# CompatibleDistiller, the frozen old model (digits_old_model.py) the teacher; both embeddings are tapped at
# the neck. Evaluation: accuracy of the new model and the hot-refresh curve (plot next to the log).
# Set the old checkpoint with --cfg-options model.teacher_ckpt=work_dirs/digits_old_model/epoch_12.pth
_base_ = ['./digits_new_model.py']

old_model = '{{fileDirname}}/digits_old_model.py'
model = dict(
    _delete_=True,
    type='CompatibleDistiller',
    student=_base_.model,
    teacher=old_model,
    teacher_ckpt=None,
    teacher_forward='extract_feat',
    old_classifier='head.fc',
    student_taps=dict(emb=dict(module='neck', idx=-1)),
    teacher_taps=dict(emb=dict(module='neck', idx=-1)),
    distill_losses=dict())
val_evaluator = [
    dict(type='Accuracy', topk=(1, )),
    dict(type='HotRefreshMetric', fractions=11, order='entropy', plot_file='hot_refresh.png')
]
test_evaluator = val_evaluator
log_level = 'INFO'   # the hot-refresh table is logged at INFO
