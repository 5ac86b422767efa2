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
"""
import argparse
import json
import os
import os.path as osp
import time
from typing import List, Optional

import numpy as np
import torch
from mmengine.config import DictAction


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
        cv2.imwrite(path, cv2.cvtColor(np.concatenate(tiles, axis=1), cv2.COLOR_RGB2BGR))
        return path
    path = path_noext + '.mp4'
    h, w = frames[0].shape[:2]
    writer = cv2.VideoWriter(path, cv2.VideoWriter_fourcc(*'mp4v'), fps, (w, h))
    if not writer.isOpened():
        raise RuntimeError(f'could not open a video writer for {path} (OpenCV without mp4 support?)')
    for f, p in zip(frames, preds):
        writer.write(cv2.cvtColor(overlay(f, p), cv2.COLOR_RGB2BGR))
    writer.release()
    return path


def main(argv: Optional[List[str]] = None) -> dict:
    args = parse_args(argv)
    from mmengine.config import Config
    from mmengine.registry import DATASETS, MODELS
    from mmengine.runner import load_checkpoint
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
    load_checkpoint(model, args.checkpoint, map_location='cpu')
    model.to(args.device).eval()
    dataset = DATASETS.build(cfg[args.dataloader]['dataset'])
    if not getattr(dataset, 'test_mode', False):
        raise ValueError('the dataset must be in test_mode (whole videos)')
    n_videos = len(dataset) if args.max_videos is None else min(args.max_videos, len(dataset))
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
            j, f = evaluate_sequence(ds.gt_masks.cpu().numpy(), preds_np)
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
    with open(osp.join(args.out_dir, 'inference_summary.json'), 'w') as fh:
        json.dump({k: v for k, v in result.items()}, fh, indent=2)
    return result


if __name__ == '__main__':
    main()
