"""Training / validation loops."""
from .distill_val_loop import DistillValLoop  # noqa: F401
from .teacher_eval import evaluate_teacher, teacher_input_preprocessor  # noqa: F401
