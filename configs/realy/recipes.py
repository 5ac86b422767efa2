"""Recipe record of the REALY evaluation config (format: tests/test_configs/test_recipes.py).

Official code: czh-98/REALY main.py (region-wise evaluation of a predicted face mesh against the
scans: nose, mouth, forehead, cheek; the HIFI3D keypoints and the metrical scale of each subject).
"""
REALY = 'czh-98/REALY: main.py'


def _r(value, source):
    return dict(value=value, source=source)


RECIPES = {
    'realy_eval.py': {
        'regions': _r(('nose', 'mouth', 'forehead', 'cheek'), f'{REALY} error_at_<region> columns'),
        'test_dataloader.dataset.keypoint_dir': _r('REALY_HIFI3D_keypoints',
                                                   f'{REALY} args.REALY_HIFI3D_keypoints'),
        'test_dataloader.dataset.scan_dir': _r('REALY_scan_region', f'{REALY} args.REALY_scan_region'),
        'test_dataloader.dataset.scale_file': _r('metrical_scale.txt', f'{REALY} args.scale_path'),
    },
}
NOT_PAPER_CONFIGS = {}
