"""Wire a distillation method between a student and a teacher config and write the config.

    python tools/kd_wire.py --student CFG --teacher CFG --method mgd|vitkd|nkd \
        [--where neck|backbone|head] [-o OUT]

Same as the ``mmkd-wire`` console command (see ``mmkd_plugins/wiring/cli.py``).
"""
import os.path as osp
import sys

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)
from mmkd_plugins.wiring.cli import main  # noqa: E402

if __name__ == '__main__':
    run_main(main)
