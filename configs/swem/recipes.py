"""Recipe record of the SWEM configs: each value and the official file it comes from.

Official code: lmm077/SWEM (commit d62a9be); line numbers refer to that commit. Its stages:
0 static-image pre-training (``--stage 0``), 1 DAVIS-2017 only, 3 DAVIS-2017 + YouTube-VOS-2019 (the
paper's main model, ``train_swem_s3.sh``). Command-line values of ``train_swem_s3.sh`` / ``train.py``
override ``configs/config.py`` (e.g. 128 bases, not ``MODEL.NUM_BASES = 256``). Keys index the
resolved config (``mmengine.Config.fromfile``, ``_base_`` resolved); an integer component indexes a
list. Checked by tests/test_configs/test_swem_recipe_values.py (and the project's recipe test).
"""
REPO = 'lmm077/SWEM'
CFG = f'{REPO}: configs/config.py'
S3 = f'{REPO}: train_swem_s3.sh'
TRAIN = f'{REPO}: train.py'
VID = f'{REPO}: datasets/video_dataset.py'
STATIC = f'{REPO}: datasets/static_dataset.py'
LOSS = f'{REPO}: losses/bce_losses.py'


def _r(value, source):
    return dict(value=value, source=source)


# shared by every stage: network, memory, optimizer, losses (stage-independent in the official code)
_MODEL_AND_SOLVER = {
    'model.key_dim': _r(128, f'{S3} L14 KEYDIM=128'),
    'model.value_dim': _r(512, f'{CFG} L56 MODEL.VALDIM (methods/SWEM/swem.py L14)'),
    'model.memory.num_bases': _r(128, f'{S3} L15 NBASES=128 (--num_bases)'),
    'model.memory.num_iters': _r(4, f'{S3} L13 NITER=4 (--em_iter)'),
    'model.memory.tau': _r(0.05, f'{TRAIN} L85 --tau default 0.05'),
    'model.memory.top_l': _r(64, f'{S3} L16 TOPL=64 (--top_l)'),
    'model.key_backbone.depth': _r(50, f'{S3} L8 BACKBONE=resnet50'),
    'model.key_backbone.norm_eval': _r(True, f'{REPO}: methods/SWEM/swem_trainer.py L39 set_bn_eval'),
    'model.loss_ce.type': _r('VOSBootstrappedCELoss', f'{CFG} L79 LOSS.NAME=boots_ce'),
    'model.loss_ce.start_iter': _r(20000, f'{CFG} L81 LOSS.BS_PERIOD[0]'),
    'model.loss_ce.end_iter': _r(70000, f'{CFG} L81 LOSS.BS_PERIOD[1]'),
    'model.loss_ce.p_end': _r(0.3, f'{CFG} L80 LOSS.BS_RATIO'),
    'model.loss_ce.loss_weight': _r(1.0, f'{REPO}: losses/__init__.py L58 loss_main + aux'),
    'model.loss_ce.top_p_over': _r('clip_frame', f'{LOSS} L37-49 topk over H*W of raw_loss (B, T, H*W)'),
    'model.loss_iou.type': _r('VOSIoULoss', f'{CFG} L82 LOSS.AUX=iou'),
    'model.loss_iou.loss_weight': _r(1.0, f'{CFG} L83 LOSS.AUX_RATIO'),
    'model.loss_iou.channels': _r('softmax', f'{REPO}: losses/__init__.py L52-54 softmax over the '
                                  'valid channels incl. background; bce_losses.py L127-136 mask_iou_loss'),
    'model.frame_reduction': _r('mean', f'{LOSS} L50 loss.mean() over (B, T, k); L123 / (B*T*N)'),
    'optim_wrapper.optimizer.type': _r('AdamW', f'{CFG} L73 SOLVER.OPTIMIZER'),
    'optim_wrapper.optimizer.lr': _r(2e-5, f'{S3} L34 --lr 2e-5 (train.py L72 default)'),
    'optim_wrapper.optimizer.betas': _r((0.9, 0.999), f'{REPO}: solver/solver.py L42'),
    'optim_wrapper.optimizer.eps': _r(1e-8, f'{REPO}: solver/solver.py L42'),
    'optim_wrapper.optimizer.weight_decay': _r(5e-4, f'{CFG} L75 SOLVER.WEIGHT_DECAY'),
    'param_scheduler.0.type': _r('MultiStepLR', f'{REPO}: solver/solver.py L65'),
    'param_scheduler.0.gamma': _r(0.1, f'{CFG} L72 SOLVER.GAMMA'),
    'auto_scale_lr.base_batch_size': _r(8, f'{S3} L11 BATCHSIZE=8 (here 8 GPUs x 1 clip)'),
}


def _clip(prefix, max_skip, skip_source):
    """The video clips of stages 1 and 3 (``VIDDEODataset``) of the dataset at ``prefix``."""
    return {
        f'{prefix}.num_frames': _r(3, f'{CFG} L10 DATASET.NUM_SAMPLE_PER_SEQ'),
        f'{prefix}.max_objects': _r(2, f'{S3} L12 NOBJ=2 (--num_obj)'),
        f'{prefix}.crop_size': _r((384, 384), f'{CFG} L20 DATASET.VID_CROP_SIZE'),
        f'{prefix}.crop_scale': _r((0.36, 1.0), f'{VID} L174 RandomResizedCrop scale'),
        f'{prefix}.flip_prob': _r(0.5, f'{VID} L173 RandomHorizontalFlip'),
        f'{prefix}.reverse_prob': _r(0.5, f'{VID} L262 reverse time'),
        f'{prefix}.max_skip': _r(max_skip, skip_source),
        f'{prefix}.max_retries': _r(5, f'{VID} L244 while trials < 5'),
        f'{prefix}.on_no_object': _r('empty', f'{VID} L320-323 selected_labels = [-1] (all black)'),
    }


_CURRICULUM = {
    'custom_hooks.0.type': _r('VOSFrameSkipHook', f'{VID} L14-37 FrameSkipper'),
    'custom_hooks.0.policy': _r('swem', f'{VID} L14-37 FrameSkipper'),
    'custom_hooks.0.ramp_end': _r(0.1, f'{VID} L18 skip_stages[0] = 0.1 max_iter'),
    'custom_hooks.0.decay': _r((0.8, 0.9), f'{VID} L18 skip_stages[1:] = 0.8, 0.9 max_iter'),
    'custom_hooks.0.final_ratio': _r(0.4, f'{VID} L17 final_skip = max_skip * 2 // 5'),
}

_MAIN_DATA = 'train_dataloader.dataset.datasets'
RECIPES = {
    'swem_r50_8xb1-150k_davis17-ytvos19-384.py': {
        **_MODEL_AND_SOLVER,
        **_CURRICULUM,
        **_clip(f'{_MAIN_DATA}.0', 5, f'{CFG} L43 INFO.YTVOS19.max_skip'),
        **_clip(f'{_MAIN_DATA}.1.dataset', 25, f'{CFG} L33 INFO.DAVIS17.max_skip'),
        f'{_MAIN_DATA}.0.layout': _r('youtube', f'{CFG} L15 DATASET.MAINTRAIN_SET YTVOS19'),
        f'{_MAIN_DATA}.0.subset_file': _r('yv_subset.txt', f'{VID} L80 ImageSets/yv_subset.txt'),
        f'{_MAIN_DATA}.0.train_short_side': _r(480, f'{CFG} L19 DATASET.VID_LOAD_SIZE (train_480p)'),
        f'{_MAIN_DATA}.1.type': _r('RepeatDataset', f'{CFG} L34 INFO.DAVIS17.samples_per_video'),
        f'{_MAIN_DATA}.1.times': _r(5, f'{CFG} L34 INFO.DAVIS17.samples_per_video=5'),
        f'{_MAIN_DATA}.1.dataset.year': _r('2017', f'{CFG} L15 DATASET.MAINTRAIN_SET DAVIS17'),
        'train_cfg.max_iters': _r(150000, f'{CFG} L70 SOLVER.MAINTRAIN_ITERS[-1]'),
        'param_scheduler.0.milestones': _r([125000], f'{CFG} L70 SOLVER.MAINTRAIN_ITERS[0]'),
        'val_dataloader.dataset.test_size': _r((480, 864), f'{REPO}: methods/basic_modules/'
                                                'basic_evaluator.py L160 interpolate (480, 864)'),
        'val_dataloader.dataset.test_interpolation': _r('bicubic', f'{REPO}: methods/basic_modules/'
                                                        'basic_evaluator.py L160 mode=bicubic'),
    },
    'swem_r50_8xb1-150k_davis17-384.py': {
        **_MODEL_AND_SOLVER,
        **_CURRICULUM,
        **_clip('train_dataloader.dataset', 25, f'{CFG} L33 INFO.DAVIS17.max_skip'),
        'train_dataloader.dataset.year': _r('2017', f'{REPO}: datasets/__init__.py stage 1 DAVIS17'),
        'train_cfg.max_iters': _r(60000, f'{CFG} L71 SOLVER.DAVIS_ITERS[-1]'),
        'param_scheduler.0.milestones': _r([50000], f'{CFG} L71 SOLVER.DAVIS_ITERS[0]'),
    },
    'swem_r50_8xb1-300k_static-384.py': {
        **_MODEL_AND_SOLVER,
        'train_dataloader.dataset.type': _r('StaticPasteDataset', f'{STATIC} L150 StaticTransformDataset'),
        'train_dataloader.dataset.subsets': _r(['BIG_small', 'HRSOD_small', 'FSS', 'ECSSD', 'DUTS'],
                                               f'{CFG} L13 DATASET.PRETRAIN_SET'),
        'train_dataloader.dataset.ratios': _r([5, 5, 1, 1, 1], f'{CFG} L14 DATASET.PRETRAIN_SET_RATIO'),
        'train_dataloader.dataset.num_images': _r(2, f'{TRAIN} L68 --num_obj default 2; '
                                                  f'{STATIC} L249-255 max_nobj - 1 partner images'),
        'train_dataloader.dataset.pipeline.0.type': _r('PasteObjectsClip', f'{STATIC} L82-147 '
                                                       'synthesis_frames'),
        'train_dataloader.dataset.pipeline.0.num_frames': _r(3, f'{CFG} L10 NUM_SAMPLE_PER_SEQ'),
        'train_dataloader.dataset.pipeline.0.object_area': _r((0.16, 0.81), f'{STATIC} L43 '
                                                              'random_resize scale'),
        'train_dataloader.dataset.pipeline.1.clip_scale': _r((0.8, 1.5), f'{STATIC} L221 all affine'),
        'train_dataloader.dataset.pipeline.1.clip_jitter': _r((0.1, 0.05, 0.05, 0.05),
                                                              f'{STATIC} L216 all ColorJitter'),
        'train_dataloader.dataset.pipeline.1.degrees': _r(20.0, f'{STATIC} L203 pair RandomAffine'),
        'train_dataloader.dataset.pipeline.1.frame_scale': _r((0.9, 1.1), f'{STATIC} L203 pair '
                                                              'RandomAffine'),
        'train_dataloader.dataset.pipeline.1.shear': _r(10.0, f'{STATIC} L203 pair RandomAffine'),
        'train_dataloader.dataset.pipeline.1.short_side': _r(384, f'{STATIC} L204 Resize(384)'),
        'train_dataloader.dataset.pipeline.1.crop_size': _r((384, 384), f'{STATIC} L205 RandomCrop'),
        'train_dataloader.dataset.pipeline.1.frame_jitter': _r((0.1, 0.05, 0.05),
                                                               f'{STATIC} L199 pair ColorJitter'),
        'train_dataloader.dataset.pipeline.2.type': _r('RandomClipTPS', f'{STATIC} L239 TPS'),
        'train_dataloader.dataset.pipeline.2.noise': _r(0.3, f'{STATIC} L239 TPS(margin_rate=0.3)'),
        'train_dataloader.dataset.pipeline.2.prob': _r(1.0, f'{STATIC} L239 TPS(p=1)'),
        'train_dataloader.dataset.pipeline.3.max_objects': _r(2, f'{TRAIN} L68 --num_obj default 2'),
        'train_cfg.max_iters': _r(300000, f'{CFG} L69 SOLVER.PRETRAIN_ITERS[-1]'),
        'param_scheduler.0.milestones': _r([150000], f'{CFG} L69 SOLVER.PRETRAIN_ITERS[0]'),
    },
}

NOT_PAPER_CONFIGS = {}
