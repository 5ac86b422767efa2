# The authors' Cityscapes segmentation recipe (yzd-v/MGD seg/), as variables for the configs here:
# - data: their `cityscapes_512x512` dataset config (seg/configs/_base_/datasets/cityscapes_512x512.py):
#   Resize (2048, 1024) with ratio 0.5-2.0, RandomCrop 512x512 with cat_max_ratio 0.75, flip,
#   photometric distortion; images padded to 512x512 (mmseg 1.x: the data preprocessor's `size`).
# - student: R18-D8 as in their pspnet / deeplabv3 `r18-d8_512x512_40k_cityscapes` configs
#   (depth 18, decode head 512 -> 128 channels, auxiliary head 256 -> 64).
# - distiller (seg/mmseg/distillation/distillers/segmentation_distiller.py, use_logit=True):
#   MGD on the last backbone stage (512 -> 2048 channels, lambda_mgd 0.75, alpha_mgd 2e-5) plus the
#   channel-wise distillation of the decode head's logits (tau 4, loss weight 3); the teacher runs
#   its decode head for it (teacher_forward='tensor': backbone + decode head, no auxiliary head).
custom_imports = dict(imports=['mmkd_plugins'], allow_failed_imports=False)

cityscapes_512x512 = dict(
    train_pipeline=[
        dict(type='LoadImageFromFile'),
        dict(type='LoadAnnotations'),
        dict(type='RandomResize', scale=(2048, 1024), ratio_range=(0.5, 2.0), keep_ratio=True),
        dict(type='RandomCrop', crop_size=(512, 512), cat_max_ratio=0.75),
        dict(type='RandomFlip', prob=0.5),
        dict(type='PhotoMetricDistortion'),
        dict(type='PackSegInputs')
    ],
    # merged into the upstream R50-D8 model: R18-D8, inputs padded to the 512x512 crop
    r18_d8_student=dict(
        data_preprocessor=dict(size=(512, 512)),
        pretrained='open-mmlab://resnet18_v1c',
        backbone=dict(depth=18),
        decode_head=dict(in_channels=512, channels=128),
        auxiliary_head=dict(in_channels=256, channels=64)))

__feat = dict(module='backbone', idx=-1)  # last backbone stage, 1/8 resolution
__logits = 'decode_head.conv_seg'  # the decode head's classifier: (N, 19, H/8, W/8) logits
__loss_mgd = dict(type='MGDLoss', alpha_mgd=2e-5,
                 inputs=dict(preds_S='mgd(student.feat)', preds_T='teacher.feat'))
mgd_seg = dict(
    # MGD + channel-wise logit distillation (the official recipe)
    teacher_forward='tensor',
    taps=dict(feat=__feat, logits=__logits),
    connectors=dict(mgd=dict(type='MGDConnector', student_channels=512, teacher_channels=2048,
                             lambda_mgd=0.75)),
    losses=dict(
        loss_mgd=__loss_mgd,
        loss_cwd=dict(type='ChannelWiseDivergenceLoss', tau=4.0, loss_weight=3.0,
                      inputs=dict(preds_S='student.logits', preds_T='teacher.logits'))),
    # MGD only (use_logit=False): merged over the above by the `_mgd-only` configs
    mgd_only=dict(teacher_forward='extract_feat',
                  student_taps=dict(_delete_=True, feat=__feat),
                  teacher_taps=dict(_delete_=True, feat=__feat),
                  distill_losses=dict(_delete_=True, loss_mgd=__loss_mgd)))
