"""``mmkd-doctor``: know that a distillation set-up works before the GPUs are spent.

One module per check: :mod:`.lint` (config), :mod:`.student_init`, :mod:`.teacher` (weights and
metric), :mod:`.preprocess`, :mod:`.taps`, :mod:`.steps` (loss terms, gradient shares, autocast);
:mod:`.grad_share` is the measurement shared with :mod:`.calibrate` (loss-weight calibration);
:mod:`.main` is the command line.
"""
