"""Small builders shared by the tests (tiny mmpretrain classifiers, teacher checkpoints)."""
import copy

import torch
from mmengine.registry import MODELS


def tiny_classifier_cfg(width: int = 4, num_classes: int = 10, depth: int = 18) -> dict:
    """A CIFAR-style mmpretrain ResNet classifier; last stage has 8 * width channels."""
    return dict(
        type='mmpretrain.ImageClassifier',
        backbone=dict(type='mmpretrain.ResNet_CIFAR', depth=depth, stem_channels=width,
                      base_channels=width),
        neck=dict(type='mmpretrain.GlobalAveragePooling'),
        head=dict(type='mmpretrain.LinearClsHead', num_classes=num_classes, in_channels=8 * width,
                  loss=dict(type='mmpretrain.CrossEntropyLoss', loss_weight=1.0)),
        data_preprocessor=dict(type='mmpretrain.ClsDataPreprocessor', num_classes=num_classes,
                               mean=[127.5] * 3, std=[127.5] * 3))


def save_random_weights(cfg: dict, path: str, seed: int = 0) -> torch.nn.Module:
    """Build ``cfg`` with seeded random weights and save them as an mmengine-style checkpoint."""
    torch.manual_seed(seed)
    model = MODELS.build(copy.deepcopy(cfg))
    model.init_weights()
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), path)
    return model


def cls_batch(n: int = 4, size: int = 16, num_classes: int = 10, seed: int = 0):
    """A preprocessed mmpretrain batch: (inputs (n, 3, size, size), data_samples with gt_label)."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    inputs = torch.randn(n, 3, size, size, generator=g)
    samples = [DataSample().set_gt_label(int(i) % num_classes) for i in range(n)]
    return inputs, samples
