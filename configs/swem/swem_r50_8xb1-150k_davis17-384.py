# SWEM trained on DAVIS-2017 train only (no YouTube-VOS), otherwise as the main config.
_base_ = ['./swem_r50_8xb1-150k_davis17-ytvos19-384.py']

train_dataloader = dict(
    dataset=dict(_delete_=True, type='VOSDataset', data_root={{_base_.davis_root}}, layout='davis',
                 split='train', year='2017', num_frames=3, max_objects=2, crop_size=(384, 384),
                 crop_scale=(0.36, 1.0), flip_prob=0.5, max_skip=10))
