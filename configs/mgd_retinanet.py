# Entry config: MGD distillation of RetinaNet-X101-64x4d into RetinaNet-R50 on COCO (2x schedule).
#   mim train mmdet configs/mgd_retinanet.py --cfg-options model.teacher_ckpt=PATH
#   python tools/train.py configs/mgd_retinanet.py       (or tools/dist_train.sh / slurm_train.sh)
# All settings live in configs/mgd/ (see configs/mgd/README.md).
_base_ = ['./mgd/mgd_retinanet-x101-64x4d_retinanet-r50_fpn_2x_coco.py']
