# Student recipe of the authors' DeepLabV3-R18 (yzd-v/MGD seg/configs/deeplabv3/deeplabv3_r18-d8_512x512_40k_cityscapes.py):
# mmseg's DeepLabV3 R50-D8 40k Cityscapes config with the R18-D8 changes and the 512x512 crops.
_base_ = ['mmseg::deeplabv3/deeplabv3_r50-d8_4xb2-40k_cityscapes-512x1024.py', './mgd_cityscapes-512x512.py']
crop_size = (512, 512)
data_preprocessor = dict(size=crop_size)
model = _base_.cityscapes_512x512.r18_d8_student
train_pipeline = _base_.cityscapes_512x512.train_pipeline
train_dataloader = dict(dataset=dict(pipeline=_base_.cityscapes_512x512.train_pipeline))
