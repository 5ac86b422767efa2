"""Semi-supervised VOS inference: palette PNG masks in the DAVIS submission layout, FPS, overlays.

Example::

    python tools/vos_inference.py configs/swem/swem_r50_8xb1-150k_davis17-ytvos19-384.py \
        work_dirs/swem/iter_150000.pth --out-dir results/davis17-val --eval --overlay strip
    # YouTube-VOS valid: all frames (valid_all_frames) segmented, the scored ones written
    python tools/vos_inference.py configs/swem/swem_r50_8xb1-150k_davis17-ytvos19-384.py \
        work_dirs/swem/iter_150000.pth --out-dir results/ytvos18-valid/Annotations \
        --dataloader ytvos_test_dataloader

Writes ``<out-dir>/<video>/<frame>.png`` (palette PNGs, DAVIS palette, original resolution; when the
dataset gives ``save_frames``, e.g. YouTube-VOS with ``frames_split='valid_all_frames'``, only those
frames are written although every frame is segmented and memorised), prints a
progress bar over all frames and the speed (FPS of the model, pre/post-processing and PNG writing
excluded, measured per frame with device synchronisation). ``--overlay strip`` writes one image strip
per video (``<out-dir>/_overlays/<video>.jpg``), ``--overlay video`` an mp4 per video, for a person to
look at. ``--eval`` also computes DAVIS J&F against the annotations of the dataset (DAVIS only).

Refuses (one line, exit status 1; ``--debug`` for the traceback):

- a checkpoint that does not fit the config's model (missing / unexpected / mis-shaped keys; the masks
  of a partly random model would look like results): ``--non-strict`` loads the matching weights anyway;
  a distiller checkpoint is refused with the conversion command; a file that is not a checkpoint is named;
- ``--eval`` on videos whose scored frames lack ground truth (J&F would count them as empty masks and
  score an empty prediction as perfect), unless ``--skip-unannotated`` scores the annotated frames only;
- a video folder without frames;
- an ``--out-dir`` whose masks / summary / overlays already exist (``--force`` replaces them) or that is
  a folder of the dataset (the annotations would be overwritten). Every file is written atomically.
"""
import argparse
import json
import os
import os.path as osp
import sys
import time
from typing import List, Optional

sys.path.insert(0, osp.abspath(osp.join(osp.dirname(__file__), '..')))  # run from a checkout

from mmkd_plugins.utils.cli_errors import run_main  # noqa: E402  (first: warning filters)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from mmengine.config import DictAction  # noqa: E402

from mmkd_plugins.utils.safe_output import (add_force_argument, atomic_write,  # noqa: E402
                                            check_output_files)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='SWEM video object segmentation inference')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--out-dir', required=True, help='output folder (DAVIS submission layout)')
    parser.add_argument('--dataloader', default='test_dataloader',
                        help='config entry whose dataset is used (test_dataloader or val_dataloader)')
    parser.add_argument('--device', default='cuda' if torch.cuda.is_available() else 'cpu')
    parser.add_argument('--overlay', choices=['none', 'strip', 'video'], default='none',
                        help='also write an image strip or an mp4 with the masks over the frames')
    parser.add_argument('--overlay-frames', type=int, default=8, help='frames in an overlay strip')
    parser.add_argument('--eval', action='store_true', help='compute DAVIS J&F (needs all annotations)')
    parser.add_argument('--skip-unannotated', action='store_true',
                        help='with --eval: score only the frames that have a ground-truth annotation '
                        '(default: a scored frame without annotation is an error)')
    parser.add_argument('--non-strict', action='store_true',
                        help='load the checkpoint even when keys are missing / unexpected / mis-shaped')
    add_force_argument(parser)
    parser.add_argument('--max-videos', type=int, default=None, help='only the first N videos')
    parser.add_argument('--no-progress', action='store_true', help='hide the progress bar')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction, metavar='KEY=VALUE',
                        help='override config entries, e.g. model.memory.num_bases=64')
    return parser.parse_args(argv)


def overlay(frame: np.ndarray, labels: np.ndarray, alpha: float = 0.5) -> np.ndarray:
    """Blend palette colours of ``labels`` (H, W) over an RGB ``frame`` (H, W, 3); keep background."""
    from mmkd_plugins.datasets.vos import davis_palette
    colours = davis_palette()[labels]
    mask = (labels > 0)[..., None]
    out = np.where(mask, (1 - alpha) * frame + alpha * colours, frame)
    return out.astype(np.uint8)


def _frames_at(inputs: torch.Tensor, size) -> List[np.ndarray]:
    import cv2
    frames = inputs.permute(0, 2, 3, 1).numpy()
    if frames.shape[1:3] != tuple(size):
        frames = [cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_LINEAR) for f in frames]
    return list(frames)


def write_overlay(kind: str, path_noext: str, frames: List[np.ndarray], preds: np.ndarray,
                  num: int = 8, fps: int = 10) -> str:
    """Write an image strip (``kind='strip'``, ``num`` evenly spaced frames) or an mp4 (``'video'``)."""
    import cv2
    os.makedirs(osp.dirname(path_noext), exist_ok=True)
    if kind == 'strip':
        ids = np.unique(np.linspace(0, len(frames) - 1, min(num, len(frames))).round().astype(int))
        tiles = []
        for i in ids:
            tile = overlay(frames[i], preds[i])
            scale = 240 / tile.shape[0] if tile.shape[0] > 240 else 1.0
            if scale != 1.0:
                tile = cv2.resize(tile, (int(tile.shape[1] * scale), 240))
            cv2.putText(tile, str(i), (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
            tiles.append(tile)
        path = path_noext + '.jpg'
        ok, data = cv2.imencode('.jpg', cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
        if not ok:
            raise RuntimeError(f'could not encode the overlay strip {path}')
        with atomic_write(path, 'wb') as fh:
            fh.write(data.tobytes())
        return path
    path = path_noext + '.mp4'
    h, w = frames[0].shape[:2]
    tmp = osp.join(osp.dirname(path), f'.{osp.basename(path)}.tmp.mp4')  # OpenCV writes by name
    writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f'could not open a video writer for {path} (OpenCV without mp4 support?)')
    try:
        try:
            for f, p in zip(frames, preds):
                writer.write(cv2.cvtColor(overlay(f, p), cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        os.replace(tmp, path)
    except BaseException:   # an interrupted write leaves the old video (or none), and no temporary file
        if osp.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def load_weights(model: torch.nn.Module, checkpoint: str, strict: bool = True) -> None:
    """Load ``checkpoint`` into ``model`` after checking that it fits (see the module doc)."""
    from mmkd_plugins.distillers.teacher import read_state_dict
    from mmkd_plugins.utils.checkpoint_files import check_checkpoint_file
    from mmkd_plugins.utils.checkpoint_match import check_state_dict_matches
    check_checkpoint_file(checkpoint)
    state = read_state_dict(checkpoint)
    check_state_dict_matches(model.state_dict(), state, checkpoint, strict)
    own = model.state_dict()
    model.load_state_dict({k: v for k, v in state.items()
                           if k in own and tuple(getattr(v, 'shape', ())) == tuple(own[k].shape)},
                          strict=False)


def planned_outputs(dataset, n_videos: int, out_dir: str, overlay_kind: str) -> List[str]:
    """Every file this run writes (checked before anything is written); raises when ``out_dir`` is one
    of the dataset's frame or annotation folders."""
    paths = [osp.join(out_dir, 'inference_summary.json')]
    for i in range(n_videos):
        info = dataset.get_data_info(i)
        video = info['video']
        target = osp.realpath(osp.join(out_dir, video))
        for src in info['frames'][:1] + [m for m in info.get('masks', [])[:1] if m]:
            if osp.realpath(osp.dirname(src)) == target:
                raise ValueError(f'--out-dir {out_dir}: it is a folder of the dataset ({osp.dirname(src)} '
                                 'would be written into): choose another output folder')
        save = set(info['save_frames']) if 'save_frames' in info else None
        paths += [osp.join(out_dir, video, f'{name}.png') for name in info['frame_names']
                  if save is None or name in save]
        if overlay_kind != 'none':
            paths.append(osp.join(out_dir, '_overlays', video + ('.jpg' if overlay_kind == 'strip' else '.mp4')))
    return paths


def check_annotations(dataset, n_videos: int) -> None:
    """Before inference: ``--eval`` needs ground truth on every scored frame (see ``--skip-unannotated``)."""
    from mmkd_plugins.evaluation.metrics.davis import unannotated_frames
    for i in range(n_videos):
        info = dataset.get_data_info(i)
        missing = unannotated_frames([m is not None for m in info['masks']], len(info['masks']))
        if missing:
            raise ValueError(f'--eval: video {info["video"]}: {len(missing)} of its {len(info["masks"]) - 2} '
                             f'scored frames have no annotation (frame {info["frame_names"][missing[0]]} first, '
                             f'in {osp.dirname(info["masks"][0] or info["frames"][0])}); J&F would count them as '
                             'empty masks. Pass --skip-unannotated to score only the annotated frames')


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS
    from mmengine.utils import import_modules_from_strings

    import mmkd_plugins  # noqa: F401  (registers the modules)
    from mmkd_plugins.datasets.vos import write_mask
    from mmkd_plugins.evaluation.metrics.davis import evaluate_sequence, summarize

    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    if args.dataloader not in cfg:
        raise KeyError(f'the config has no "{args.dataloader}" (use --dataloader val_dataloader?)')

    model = MODELS.build(cfg.model)
    load_weights(model, args.checkpoint, strict=not args.non_strict)
    model.to(args.device).eval()
    dataset = DATASETS.build(cfg[args.dataloader]['dataset'])
    if not getattr(dataset, 'test_mode', False):
        raise ValueError('the dataset must be in test_mode (whole videos)')
    n_videos = len(dataset) if args.max_videos is None else min(args.max_videos, len(dataset))
    if args.eval and not args.skip_unannotated:
        check_annotations(dataset, n_videos)
    check_output_files(planned_outputs(dataset, n_videos, args.out_dir, args.overlay),
                       [args.config, args.checkpoint], args.force)
    total_frames = sum(len(dataset.get_data_info(i)['frames']) for i in range(n_videos))

    from tqdm import tqdm
    bar = tqdm(total=total_frames, unit='frame', disable=args.no_progress, desc='SWEM')
    sync = torch.cuda.synchronize if str(args.device).startswith('cuda') else (lambda: None)
    model_time, frames_done, written, per_object = 0.0, 0, 0, {}
    overlays = []
    for vid in range(n_videos):
        sample = dataset[vid]
        data = model.data_preprocessor(dict(inputs=[sample['inputs']],
                                            data_samples=[sample['data_samples']]))
        ds = data['data_samples'][0]
        meta = ds.metainfo
        bar.set_postfix(video=meta['video'])
        sync()
        start = time.perf_counter()
        preds = model.predict_video(data['inputs'][0], ds, progress=bar.update)
        sync()
        model_time += time.perf_counter() - start
        frames_done += preds.shape[0]
        preds_np = preds.numpy()
        save = set(meta['save_frames']) if 'save_frames' in meta else None
        for name, lab in zip(meta['frame_names'], preds_np):
            if save is None or name in save:
                write_mask(osp.join(args.out_dir, meta['video'], f'{name}.png'), lab)
                written += 1
        if args.overlay != 'none':
            frames = _frames_at(sample['inputs'], preds_np.shape[1:])
            overlays.append(write_overlay(args.overlay, osp.join(args.out_dir, '_overlays', meta['video']),
                                          frames, preds_np, args.overlay_frames))
        if args.eval:
            j, f = evaluate_sequence(ds.gt_masks.cpu().numpy(), preds_np, annotated=meta.get('annotated'),
                                     skip_unannotated=args.skip_unannotated, video=meta['video'])
            for k in range(j.shape[0]):
                per_object[f"{meta['video']}_{k + 1}"] = dict(J=j[k], F=f[k])
    bar.close()
    fps = frames_done / max(model_time, 1e-9)
    result = dict(videos=n_videos, frames=frames_done, seconds=model_time, fps=fps,
                  out_dir=args.out_dir, overlays=overlays, written=written)
    print(f'Segmented {frames_done} frames of {n_videos} videos in {model_time:.2f} s: '
          f'{fps:.2f} FPS on {args.device}')
    if args.eval:
        metrics = {k: 100 * v for k, v in summarize(per_object).items()}
        result['metrics'] = metrics
        print('  '.join(f'{k}: {v:.2f}' for k, v in metrics.items()))
    with atomic_write(osp.join(args.out_dir, 'inference_summary.json'), 'w') as fh:
        json.dump({k: v for k, v in result.items()}, fh, indent=2)
    return result


if __name__ == '__main__':
    run_main(main)
