# ViTKD from the ViT teacher (64-d, 6 blocks) into the ViT student (16-d, 2 blocks): blocks 0 and 1
# mimicked with the paper's alpha 3e-5, the last block (after the final norm ln1) generated from
# masked tokens (lambda 0.5) with beta 2.2e-4 instead of the paper's 3e-6.
# Why beta x73.5: ViTKD's terms are sums over tokens x channels divided by the batch size, and the
# paper's weights are set for 196 tokens x 384 channels (DeiT III-S); here 16 x 64, 73.5x fewer
# summed terms (the rule the MGD demo uses for its alpha). Applied to the generation term only:
# scaling the mimicking weight as well cancelled the gain. With the paper's weights ViTKD's gain
# stays inside the seed noise here (+1.05, SE 0.55 over seeds 0-29: 1.9 SE). The setting was
# chosen by a search over 12 variants on seeds 0-9 and then checked on fresh seeds 10-29 (+1.47,
# SE 0.75); the demo reports all 30 seeds. See benchmarks/results/vitkd_demo_variants.md
# (python benchmarks/vitkd_demo_variants.py).
_base_ = ['./digits_vit_student.py']
model = dict(
    _delete_=True,
    type='SingleTeacherDistiller',
    student=_base_.model,
    teacher='{{fileDirname}}/digits_vit_teacher.py',
    teacher_ckpt=None,  # set with --cfg-options model.teacher_ckpt=PATH
    teacher_forward='extract_feat',
    student_taps=dict(low0='backbone.layers.0', low1='backbone.layers.1', high='backbone.ln1'),
    teacher_taps=dict(low0='backbone.layers.0', low1='backbone.layers.1', high='backbone.ln1'),
    distill_losses=dict(
        loss_vitkd=dict(
            type='ViTKDLoss', student_dims=16, teacher_dims=64,
            alpha_vitkd=3e-5, beta_vitkd=2.2e-4, lambda_vitkd=0.5,
            inputs=dict(student_low_0='student.low0', teacher_low_0='teacher.low0',
                        student_low_1='student.low1', teacher_low_1='teacher.low1',
                        student_high='student.high', teacher_high='teacher.high'))))
optim_wrapper = dict(paramwise_cfg=dict(custom_keys={'.mask_token': dict(decay_mult=0.0)}))
