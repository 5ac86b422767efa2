"""Registered modules of this kind; each method in its own file."""
from .mgd import MGDLoss, mgd_loss  # noqa: F401
from .cwd import ChannelWiseDivergenceLoss, channel_wise_divergence  # noqa: F401
from .nkd import NKDLoss, TaskLossWithTfNKD, TfNKDLoss, nkd_loss, tf_nkd_loss  # noqa: F401
from .vitkd import (ViTKDLoss, vit_patch_tokens, vitkd_generation_loss,  # noqa: F401
                    vitkd_mimic_loss, vitkd_taps)
from .hyp2 import HyP2Loss, hyp2_loss, hyp2_loss_terms, hyp2_margin  # noqa: F401
from .style_contrast import ContentContrastiveLoss, StyleContrastiveLoss  # noqa: F401
from .compatible import BCTLoss, BiCTTransformLoss, RACTLoss, UniBCTLoss  # noqa: F401
