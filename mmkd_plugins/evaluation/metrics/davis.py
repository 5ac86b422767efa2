"""DAVIS J&F metric for semi-supervised video object segmentation.

Re-implements the computation of the DAVIS-2017 evaluation (davisvideochallenge/davis2017-evaluation):

* ``J`` (region similarity) = ``|M n G| / |M u G|``, 1 when the union is empty.
* ``F`` (boundary accuracy): boundaries by :func:`seg2bmap`; each boundary dilated by a disk of radius
  ``ceil(0.008 * ||(H, W)||)``; ``P = |B_pred n dil(B_gt)| / |B_pred|``, ``R = |B_gt n dil(B_pred)| /
  |B_gt|``; no predicted boundary but a true one -> (P, R) = (1, 0); a predicted one but no true one ->
  (0, 1); neither -> (1, 1); ``F = 2PR / (P + R)`` or 0.
* Semi-supervised protocol: the first and the last frame are dropped; the number of objects is the
  largest label of the first ground-truth frame; objects missing from the prediction count as empty
  masks; per object: mean, recall = mean(score > 0.5), decay = mean(first quarter) - mean(last quarter)
  with the reference's overlapping bins; J&F = (mean_obj J-mean + mean_obj F-mean) / 2.

Frames without ground truth: a missing annotation is not an empty mask (counting it as one scores an
empty prediction as perfect). When the samples say which frames are annotated (metainfo ``annotated``,
one bool per frame, set by :class:`~mmkd_plugins.datasets.VOSDataset`), an evaluated frame without
annotation is an error naming the video and the frames, unless ``skip_unannotated=True``
(``tools/vos_inference.py --skip-unannotated``), which scores the annotated frames only.

Result files (``output_dir``): written atomically; an existing file that the metric did not write
itself is refused (one line naming the file and ``overwrite=True``) unless ``overwrite=True``.

One deliberate difference: the reference stores the bin boundaries of the decay in ``uint8`` (wrong for
videos longer than 257 frames); integers are used here.
"""
import csv
import math
import os
import os.path as osp
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
from mmengine.evaluator import BaseMetric
from mmengine.logging import MMLogger
from mmengine.registry import METRICS

from mmkd_plugins.utils.safe_output import RunOutputs


def _to_numpy(x) -> np.ndarray:
    if hasattr(x, 'detach'):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def db_eval_iou(gt: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """Region similarity J of binary masks (..., H, W) -> (...); 1 where the union is empty."""
    gt, pred = np.asarray(gt).astype(bool), np.asarray(pred).astype(bool)
    if gt.shape != pred.shape:
        raise ValueError(f'db_eval_iou: ground truth {gt.shape} and prediction {pred.shape} differ')
    inter = np.sum(gt & pred, axis=(-2, -1))
    union = np.sum(gt | pred, axis=(-2, -1))
    with np.errstate(divide='ignore', invalid='ignore'):
        j = inter / union.astype(np.float64)
    return np.where(union == 0, 1.0, j)


def seg2bmap(seg: np.ndarray) -> np.ndarray:
    """Boundary map of a binary mask (H, W): a pixel is a boundary pixel when it differs from its
    right, lower or lower-right neighbour (last row compares to the right only, last column to the
    lower only, the bottom-right pixel is never a boundary)."""
    seg = np.asarray(seg).astype(bool)
    if seg.ndim != 2:
        raise ValueError(f'seg2bmap: expected a 2-D mask, got shape {seg.shape}')
    e = np.zeros_like(seg)
    s = np.zeros_like(seg)
    se = np.zeros_like(seg)
    e[:, :-1] = seg[:, 1:]
    s[:-1, :] = seg[1:, :]
    se[:-1, :-1] = seg[1:, 1:]
    b = (seg ^ e) | (seg ^ s) | (seg ^ se)
    b[-1, :] = seg[-1, :] ^ e[-1, :]
    b[:, -1] = seg[:, -1] ^ s[:, -1]
    b[-1, -1] = False
    return b


def disk(radius: int) -> np.ndarray:
    """Disk structuring element ``x^2 + y^2 <= r^2`` of size (2r+1, 2r+1) (as skimage's ``disk``)."""
    r = int(radius)
    yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
    return (xx ** 2 + yy ** 2) <= r * r


def _dilate(mask: np.ndarray, selem: np.ndarray) -> np.ndarray:
    from mmkd_plugins.utils import require
    ndimage = require('scipy.ndimage', 'the DAVIS F (boundary) measure')
    if not mask.any():
        return mask.copy()
    return ndimage.binary_dilation(mask, structure=selem)


def f_measure(pred: np.ndarray, gt: np.ndarray, bound_th: float = 0.008) -> float:
    """Boundary F measure of one binary prediction (H, W) against its ground truth (H, W)."""
    pred, gt = np.asarray(pred).astype(bool), np.asarray(gt).astype(bool)
    if pred.shape != gt.shape or pred.ndim != 2:
        raise ValueError(f'f_measure: prediction {pred.shape} and ground truth {gt.shape} must be '
                         'equal 2-D shapes')
    bound_pix = bound_th if bound_th >= 1 else math.ceil(bound_th * math.hypot(*pred.shape))
    pred_b, gt_b = seg2bmap(pred), seg2bmap(gt)
    selem = disk(bound_pix)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt > 0:
        precision, recall = 1.0, 0.0
    elif n_pred > 0 and n_gt == 0:
        precision, recall = 0.0, 1.0
    elif n_pred == 0 and n_gt == 0:
        precision, recall = 1.0, 1.0
    else:
        precision = float(np.sum(pred_b & _dilate(gt_b, selem))) / n_pred
        recall = float(np.sum(gt_b & _dilate(pred_b, selem))) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2 * precision * recall / (precision + recall)


def db_eval_boundary(gt: np.ndarray, pred: np.ndarray, bound_th: float = 0.008) -> np.ndarray:
    """F of binary masks (T, H, W) or (H, W) -> (T,) or scalar array."""
    gt, pred = np.asarray(gt), np.asarray(pred)
    if gt.shape != pred.shape:
        raise ValueError(f'db_eval_boundary: ground truth {gt.shape} and prediction {pred.shape} '
                         'differ')
    if gt.ndim == 2:
        return np.asarray(f_measure(pred, gt, bound_th))
    return np.array([f_measure(pred[i], gt[i], bound_th) for i in range(gt.shape[0])])


def db_statistics(per_frame: np.ndarray) -> Tuple[float, float, float]:
    """Mean, recall (fraction > 0.5) and decay of a per-frame score sequence.

    Decay: ``ids = round(linspace(1, N, 5)) - 1``, bins ``x[ids[i]:ids[i+1]+1]``, decay = mean(bin 0)
    - mean(bin 3) (NaN-aware means, as the reference).
    """
    x = np.asarray(per_frame, dtype=np.float64)
    if x.size == 0:
        return float('nan'), float('nan'), float('nan')
    with np.errstate(all='ignore'):
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter('ignore', category=RuntimeWarning)
            mean = float(np.nanmean(x))
            recall = float(np.nanmean(x > 0.5))
            ids = (np.round(np.linspace(1, len(x), 5) + 1e-10) - 1).astype(np.int64)
            bins = [x[ids[i]:ids[i + 1] + 1] for i in range(4)]
            decay = float(np.nanmean(bins[0]) - np.nanmean(bins[3]))
    return mean, recall, decay


def split_objects(labels: np.ndarray, num_objects: int) -> np.ndarray:
    """(T, H, W) label map -> (num_objects, T, H, W) binary masks of labels 1..num_objects."""
    ids = np.arange(1, num_objects + 1).reshape(-1, 1, 1, 1)
    return labels[None] == ids


def unannotated_frames(annotated: Optional[Sequence[bool]], num_frames: int) -> List[int]:
    """Indices of the scored frames (all but the first and the last) that have no ground truth."""
    if annotated is None:
        return []
    if len(annotated) != num_frames:
        raise ValueError(f'evaluate_sequence: {len(annotated)} "annotated" flags for {num_frames} frames')
    return [t for t in range(1, num_frames - 1) if not annotated[t]]


def evaluate_sequence(gt_labels: np.ndarray, pred_labels: np.ndarray,
                      bound_th: float = 0.008, annotated: Optional[Sequence[bool]] = None,
                      skip_unannotated: bool = False, video: str = 'the video'
                      ) -> Tuple[np.ndarray, np.ndarray]:
    """Per-object, per-frame J and F of one video (semi-supervised protocol).

    Args:
        gt_labels: (T, H, W) ground-truth label map (0 background, 255 void -> background).
        pred_labels: (T, H, W) predicted label map of the same frames (all T frames; the first and last
            are dropped here).
        bound_th: boundary tolerance of F.
        annotated: (T,) which frames have a ground-truth annotation (``None``: all).
        skip_unannotated: score only the annotated frames; else an unannotated scored frame is an error.
        video: the video's name, for messages.

    Returns:
        J and F, each (num_objects, T' ) with T' = T - 2 scored frames (fewer with skip_unannotated).
    """
    gt_labels, pred_labels = _to_numpy(gt_labels).astype(np.int64), _to_numpy(pred_labels).astype(np.int64)
    if gt_labels.ndim != 3 or gt_labels.shape != pred_labels.shape:
        raise ValueError(f'evaluate_sequence: ground truth {gt_labels.shape} and prediction '
                         f'{pred_labels.shape} must both be (T, H, W) and equal')
    if gt_labels.shape[0] < 3:
        raise ValueError(f'evaluate_sequence: the protocol drops the first and last frame, so a video '
                         f'needs at least 3 frames, got {gt_labels.shape[0]}')
    missing = unannotated_frames(annotated, gt_labels.shape[0])
    if missing and not skip_unannotated:
        raise ValueError(f'{video}: {len(missing)} of the {gt_labels.shape[0] - 2} scored frames have no '
                         f'ground-truth annotation (frames {missing[:5]}{" ..." if len(missing) > 5 else ""}); '
                         'J&F needs every scored frame annotated (DAVIS val). To score only the annotated '
                         'frames pass --skip-unannotated (DAVISMetric(skip_unannotated=True))')
    gt_labels = np.where(gt_labels == 255, 0, gt_labels)
    num_objects = int(gt_labels[0].max())
    keep = [t for t in range(1, gt_labels.shape[0] - 1) if t not in set(missing)]
    if not keep:
        raise ValueError(f'{video}: none of the scored frames (all but the first and the last) has a '
                         'ground-truth annotation: nothing to evaluate')
    gt = gt_labels[keep]
    pred = pred_labels[keep]
    if pred.size and int(pred.max()) > num_objects:
        raise ValueError(f'evaluate_sequence: the prediction has label {int(pred.max())} but the '
                         f'first ground-truth frame has only {num_objects} objects')
    gt_obj, pred_obj = split_objects(gt, num_objects), split_objects(pred, num_objects)
    j = np.stack([db_eval_iou(gt_obj[o], pred_obj[o]) for o in range(num_objects)]) \
        if num_objects else np.zeros((0, gt.shape[0]))
    f = np.stack([db_eval_boundary(gt_obj[o], pred_obj[o], bound_th) for o in range(num_objects)]) \
        if num_objects else np.zeros((0, gt.shape[0]))
    return j, f


def summarize(per_object: Dict[str, Dict[str, np.ndarray]]) -> Dict[str, float]:
    """Global results from ``{'<seq>_<k>': {'J': per-frame, 'F': per-frame}}`` (values in [0, 1])."""
    stats = {m: np.array([db_statistics(v[m]) for v in per_object.values()]).reshape(-1, 3)
             for m in ('J', 'F')}
    out = {}
    for m in ('J', 'F'):
        for i, name in enumerate(('Mean', 'Recall', 'Decay')):
            out[f'{m}-{name}'] = float(np.mean(stats[m][:, i])) if len(stats[m]) else float('nan')
    out['J&F-Mean'] = (out['J-Mean'] + out['F-Mean']) / 2
    return out


@METRICS.register_module()
class DAVISMetric(BaseMetric):
    """DAVIS J&F (mean, recall, decay) per object and overall, semi-supervised protocol.

    Each data sample (from :class:`SWEM` ``predict``) must carry ``pred_masks`` and ``gt_masks``, both
    (T, H, W) label maps at the original resolution, and ``video`` in its metainfo. Per-frame scores are
    computed in :meth:`process` (so whole videos are not kept in memory).

    Args:
        bound_th: boundary tolerance (fraction of the image diagonal, or pixels when >= 1).
        scale: multiplier of the reported values (100 -> percentages, as the papers).
        output_dir: if given, ``global_results.csv`` and ``per-sequence_results.csv`` are written there
            (atomically: a temporary file renamed onto the name). Files of an earlier run are never
            replaced silently: when either file already exists at construction (before any inference)
            or at writing time and was not written by this metric, it is an error naming the file, unless
            ``overwrite``; the metric's own files are refreshed at every evaluation (validation during
            training writes them at each interval).
        skip_unannotated: score only the frames with a ground-truth annotation (metainfo
            ``annotated``); by default a scored frame without annotation is an error.
        overwrite: replace CSV files in ``output_dir`` that this metric did not write (a previous run's,
            e.g. ``--cfg-options test_evaluator.overwrite=True``).
    """
    RESULT_FILES = ('global_results.csv', 'per-sequence_results.csv')
    default_prefix = 'davis'

    def __init__(self, bound_th: float = 0.008, scale: float = 100.0,
                 output_dir: Optional[str] = None, collect_device: str = 'cpu',
                 prefix: Optional[str] = None, skip_unannotated: bool = False,
                 overwrite: bool = False) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.bound_th, self.scale, self.output_dir = bound_th, scale, output_dir
        self.skip_unannotated = skip_unannotated
        self._outputs = RunOutputs('DAVISMetric', overwrite)
        if output_dir:   # refused now, before hours of inference, not when the results are written
            for name in self.RESULT_FILES:
                self._outputs.check(osp.join(output_dir, name))
        self.per_object: Dict[str, Dict[str, float]] = {}

    def process(self, data_batch, data_samples: Sequence) -> None:
        for sample in data_samples:
            get = sample.get if isinstance(sample, dict) else (lambda k, d=None: getattr(sample, k, d))
            pred, gt = get('pred_masks'), get('gt_masks')
            if pred is None or gt is None:
                raise KeyError('DAVISMetric: each sample needs "pred_masks" and "gt_masks"')
            meta = sample.metainfo if hasattr(sample, 'metainfo') else sample
            video = meta.get('video', f'video{len(self.results)}')
            j, f = evaluate_sequence(gt, pred, self.bound_th, meta.get('annotated'), self.skip_unannotated,
                                     video)
            self.results.append(dict(video=video, J=j, F=f))

    def compute_metrics(self, results: List[dict]) -> Dict[str, float]:
        per_object = {}
        for res in results:
            for k in range(res['J'].shape[0]):
                per_object[f"{res['video']}_{k + 1}"] = dict(J=res['J'][k], F=res['F'][k])
        glob = summarize(per_object)
        self.per_object = {name: dict(J=db_statistics(v['J'])[0] * self.scale,
                                      F=db_statistics(v['F'])[0] * self.scale)
                           for name, v in per_object.items()}
        logger = MMLogger.get_current_instance()
        lines = ['Sequence        J-Mean   F-Mean']
        lines += [f'{n:<15} {v["J"]:7.2f} {v["F"]:7.2f}' for n, v in self.per_object.items()]
        logger.info('DAVIS per-object results:\n' + '\n'.join(lines))
        out = {k: v * self.scale for k, v in glob.items()}
        if self.output_dir:
            os.makedirs(self.output_dir, exist_ok=True)
            keys = ['J&F-Mean', 'J-Mean', 'J-Recall', 'J-Decay', 'F-Mean', 'F-Recall', 'F-Decay']
            paths = [osp.join(self.output_dir, name) for name in self.RESULT_FILES]
            for path in paths:   # both refused before either is written
                self._outputs.check(path)
            with self._outputs.open(paths[0], 'w', newline='') as fh:
                w = csv.writer(fh)
                w.writerow(keys)
                w.writerow([f'{out[k]:.3f}' for k in keys])
            with self._outputs.open(paths[1], 'w', newline='') as fh:
                w = csv.writer(fh)
                w.writerow(['Sequence', 'J-Mean', 'F-Mean'])
                for n, v in self.per_object.items():
                    w.writerow([n, f'{v["J"]:.3f}', f'{v["F"]:.3f}'])
        return out
