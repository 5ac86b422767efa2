"""Check a distillation set-up before training (same as the ``mmkd-doctor`` console command).

    python tools/kd_doctor.py CONFIG [--cfg-options k=v ...] [--batches N] [--out report.json]
    python tools/kd_doctor.py CONFIG --calibrate 0.3 [--write calibrated.py]

Exits 1 when any check FAILs. See ``mmkd_plugins/doctor/`` and the README section
"Check a set-up before training: mmkd-doctor".
"""
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)
from mmkd_plugins.doctor.main import main  # noqa: E402

if __name__ == '__main__':
    run_main(main)
