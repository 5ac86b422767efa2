# MGD only (the authors' use_logit=False): the default recipe without the channel-wise divergence of
# the decode heads' logits; the teacher stops after its backbone (teacher_forward='extract_feat').
_base_ = ['./mgd_pspnet-r101_deeplabv3-r18-d8_8xb2-40k_cityscapes-512x512.py']
model = _base_.mgd_seg.mgd_only
