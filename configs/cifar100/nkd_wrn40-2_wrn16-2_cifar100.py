# NKD: WRN-40-2 teacher -> WRN-16-2 student on CIFAR-100 (tau 3.0, gamma 3.5, the
# paper's CIFAR-100 setting). Train the teacher first with wrn40-2_cifar100.py.
_base_ = ['./wrn16-2_cifar100.py', './_base_/nkd_cifar100.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='{{fileDirname}}/wrn40-2_cifar100.py',
    teacher_ckpt='work_dirs/wrn40-2_cifar100/epoch_240.pth',
    teacher_forward='tensor', student_taps=_base_.nkd_cifar100.taps,
    teacher_taps=_base_.nkd_cifar100.taps, distill_losses=_base_.nkd_cifar100.losses)
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: the benchmark's published teacher accuracy (CRD / DKD tables): 75.61 top-1.
teacher_expected = dict(metric='accuracy/top1', value=75.61, tol=10.0)
