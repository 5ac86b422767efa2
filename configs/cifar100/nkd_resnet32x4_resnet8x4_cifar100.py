# NKD: ResNet-32x4 teacher -> ResNet-8x4 student on CIFAR-100 (tau 3.0, gamma 3.5, the
# paper's CIFAR-100 setting). Train the teacher first with resnet32x4_cifar100.py.
_base_ = ['./resnet8x4_cifar100.py', './_base_/nkd_cifar100.py']

model = dict(
    _delete_=True, type='SingleTeacherDistiller', student=_base_.model,
    teacher='{{fileDirname}}/resnet32x4_cifar100.py',
    teacher_ckpt='work_dirs/resnet32x4_cifar100/epoch_240.pth',
    teacher_forward='tensor', student_taps=_base_.nkd_cifar100.taps,
    teacher_taps=_base_.nkd_cifar100.taps, distill_losses=_base_.nkd_cifar100.losses)
# The teacher's official number, checked by mmkd-doctor on the first validation batches (a
# small sample: hence the tolerance; raise --batches).
# Source: the benchmark's published teacher accuracy (CRD / DKD tables): 79.42 top-1.
teacher_expected = dict(metric='accuracy/top1', value=79.42, tol=10.0)
