"""Automatic wiring of a distillation method between two models (``mmkd-wire``)."""
from .pairing import Pair, depth_pairs, pair_backbone, pair_logits, pair_neck, pair_vit
from .probe import Candidate, Probe, WiringError, config_input_size, probe
from .writer import PAPER_WEIGHTS, write_config

__all__ = ['Candidate', 'Pair', 'Probe', 'WiringError', 'PAPER_WEIGHTS', 'config_input_size',
           'depth_pairs', 'pair_backbone', 'pair_logits', 'pair_neck', 'pair_vit', 'probe',
           'write_config']
