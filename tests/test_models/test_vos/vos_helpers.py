"""Tiny SWEM configs shared by the VOS tests (plain-CNN backbones, L = 8 bases, 64x64 frames)."""
import copy


def tiny_swem_cfg(memory: str = 'SWEMMemory', num_bases: int = 8, top_l: int = 8) -> dict:
    mem = dict(type=memory, top_l=top_l)
    if memory == 'SWEMMemory':
        mem.update(num_bases=num_bases, num_iters=4, tau=0.05)
    else:
        mem.update(mem_every=5)
    return dict(
        type='SWEM',
        key_backbone=dict(type='VOSTinyBackbone', in_channels=3, channels=(16, 32, 64)),
        value_backbone=dict(type='VOSTinyBackbone', in_channels=5, channels=(16, 16, 32)),
        key_channels=(64, 32, 16), value_backbone_channels=32, key_dim=16, value_dim=32,
        decoder_channels=16, memory=mem)


def tiny_runner_cfg(data_root: str, work_dir: str, max_iters: int = 3, model: dict = None) -> dict:
    loader = dict(num_workers=0, collate_fn=dict(type='pseudo_collate'))
    return dict(
        model=copy.deepcopy(model or tiny_swem_cfg()),
        work_dir=work_dir,
        train_dataloader=dict(
            batch_size=2, sampler=dict(type='InfiniteSampler', shuffle=True),
            dataset=dict(type='VOSDataset', data_root=data_root, split='train', crop_size=(64, 64),
                         crop_scale=(0.6, 1.0), num_frames=3, max_objects=2, max_skip=5), **loader),
        train_cfg=dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=1e-3, weight_decay=5e-4)),
        val_dataloader=dict(
            batch_size=1, sampler=dict(type='DefaultSampler', shuffle=False),
            dataset=dict(type='VOSDataset', data_root=data_root, split='val', test_mode=True,
                         test_short_side=None), **loader),
        val_cfg=dict(type='ValLoop'),
        val_evaluator=dict(type='DAVISMetric'),
        # official schedule shape, squeezed into a few iterations (ramp 50 %, decay 60-90 %)
        custom_hooks=[dict(type='VOSFrameSkipHook', ramp_end=0.5, decay=(0.6, 0.9))],
        default_hooks=dict(logger=dict(type='LoggerHook', interval=1),
                           checkpoint=dict(type='CheckpointHook', interval=max_iters,
                                           by_epoch=False)),
        log_processor=dict(by_epoch=False),
        randomness=dict(seed=0),
        log_level='WARNING')


def single_thread():
    """Generator for an autouse fixture: run with one torch thread (the CI box has 2 shared cores, where
    two OpenMP threads spin-wait and slow tiny convolutions down by orders of magnitude)."""
    import torch
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)
