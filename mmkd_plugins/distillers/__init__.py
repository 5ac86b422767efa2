"""The generic distiller: a student, a frozen teacher, feature taps, connectors and losses."""
from .single_teacher import SingleTeacherDistiller, gather_gt_labels
from .taps import FeatureTaps, TapError, find_module
from .teacher import build_frozen_teacher, load_weights_strictly, read_state_dict

__all__ = ['SingleTeacherDistiller', 'FeatureTaps', 'TapError', 'find_module', 'gather_gt_labels',
           'build_frozen_teacher', 'load_weights_strictly', 'read_state_dict']
