"""Data preprocessor for video clips: uint8 (T, 3, H, W) RGB frames -> normalised float clips."""
from typing import Sequence

import torch
from mmengine.model import BaseDataPreprocessor
from mmengine.registry import MODELS


@MODELS.register_module()
class VOSDataPreprocessor(BaseDataPreprocessor):
    """Normalise clips ``(x - mean) / std`` per RGB channel and stack them when they share a shape.

    Input ``data``: ``inputs`` a list of (T, 3, H, W) tensors (RGB, 0-255), ``data_samples`` a list.
    Output ``inputs``: a (B, T, 3, H, W) float tensor when all clips have the same shape (training),
    else the list of normalised clips (whole-video inference).
    """

    def __init__(self, mean: Sequence[float] = (123.675, 116.28, 103.53),
                 std: Sequence[float] = (58.395, 57.12, 57.375), non_blocking: bool = False) -> None:
        super().__init__(non_blocking)
        if len(mean) != 3 or len(std) != 3:
            raise ValueError(f'VOSDataPreprocessor: mean and std need 3 values, got {mean}, {std}')
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), False)
        self.register_buffer('std', torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), False)

    def forward(self, data: dict, training: bool = False) -> dict:
        data = self.cast_data(data)
        inputs = data['inputs']
        if isinstance(inputs, torch.Tensor):
            inputs = list(inputs) if inputs.dim() == 5 else [inputs]
        clips = []
        for clip in inputs:
            if clip.dim() != 4 or clip.shape[1] != 3:
                raise ValueError(f'VOSDataPreprocessor: each clip must be (T, 3, H, W), got '
                                 f'{tuple(clip.shape)}')
            clips.append((clip.float() - self.mean) / self.std)
        if all(c.shape == clips[0].shape for c in clips):
            out = torch.stack(clips)
        else:
            out = clips
        return dict(inputs=out, data_samples=data.get('data_samples'))
