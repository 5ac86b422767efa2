"""Multi-label image lists for deep-hashing retrieval (train / query / database splits).

List-file format (the one of the public deep-hashing code bases), one image a line::

    relative/path/to/image.jpg 0 1 0 0 1 ... 0      # path, then C multi-hot labels (0/1)

A line with all-zero labels is allowed (such an image is relevant to nothing). Paths are joined with
``data_root`` + ``data_prefix['img_path']``.

Samples carry ``img_path``, ``gt_label`` (class indices, int64), ``gt_score`` (multi-hot, float32) and
``split`` ('train', 'query' or 'database'), so mmpretrain's ``PackInputs`` yields mmpretrain-style
data samples (add ``'split'`` to its ``meta_keys`` for evaluation with ``HashingMAP``).
"""
import json
import os
import os.path as osp
import xml.etree.ElementTree as ET
from typing import Dict, List, Optional, Sequence, Union

import numpy as np
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS

SPLITS = ('train', 'query', 'database')

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow',
               'diningtable', 'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa',
               'train', 'tvmonitor')

COCO_CLASSES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck', 'boat',
    'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench', 'bird', 'cat', 'dog',
    'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat',
    'baseball glove', 'skateboard', 'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup', 'fork',
    'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot', 'hot dog',
    'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant', 'bed', 'dining table', 'toilet', 'tv',
    'laptop', 'mouse', 'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear', 'hair drier', 'toothbrush')


def parse_hashing_list(path: str, num_classes: Optional[int] = None) -> List[tuple]:
    """Read a list file -> [(relative image path, (C,) uint8 multi-hot), ...].

    Raises:
        FileNotFoundError: missing file.
        ValueError: a malformed line (no labels, a label not 0/1, a different number of labels).
    """
    if not osp.isfile(path):
        raise FileNotFoundError(f'multi-label hashing list file not found: {path}')
    entries = []
    with open(path, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            img, labels = parts[0], parts[1:]
            if not labels:
                raise ValueError(f'{path}:{lineno}: expected "image_path l_1 ... l_C", found no labels')
            row = parse_label_row(labels, f'{path}:{lineno}', num_classes)
            num_classes = len(row)
            entries.append((img, row))
    return entries


def parse_label_row(values: Sequence[str], where: str, num_classes: Optional[int] = None) -> np.ndarray:
    """``['0', '1', ...]`` -> (C,) uint8 multi-hot; a ValueError names ``where`` (``file:line``) for a
    label other than 0/1 or, when ``num_classes`` is given, a different number of labels."""
    if any(v not in ('0', '1') for v in values):
        raise ValueError(f'{where}: labels must be 0 or 1, got {" ".join(values)}')
    if num_classes is not None and len(values) != num_classes:
        raise ValueError(f'{where}: expected {num_classes} labels, got {len(values)}')
    return np.array([v == '1' for v in values], dtype=np.uint8)


def write_hashing_list(path: str, image_paths: Sequence[str], multi_hot: np.ndarray) -> None:
    """Write a list file (the inverse of :func:`parse_hashing_list`)."""
    multi_hot = np.asarray(multi_hot)
    if multi_hot.ndim != 2 or multi_hot.shape[0] != len(image_paths):
        raise ValueError(f'write_hashing_list: need ({len(image_paths)}, C) labels, got '
                         f'{multi_hot.shape}')
    from mmkd_plugins.utils.safe_output import atomic_write
    for img in image_paths:
        if any(c.isspace() for c in img):
            raise ValueError(f'write_hashing_list: image paths cannot contain spaces: {img!r}')
    with atomic_write(path, 'w', encoding='utf-8') as f:
        for img, row in zip(image_paths, multi_hot):
            f.write(img + ' ' + ' '.join(str(int(v != 0)) for v in row) + '\n')


def voc_hashing_list(voc_root: str, image_set: str, out_file: str) -> int:
    """Make a list file from a VOC devkit year folder (``VOCdevkit/VOC2007``), ``image_set`` e.g.
    'trainval'/'test' (2007) or 'train'/'val' (2012). Every object class present (difficult ones
    included) is a label. Returns the number of images written."""
    split_file = osp.join(voc_root, 'ImageSets', 'Main', f'{image_set}.txt')
    if not osp.isfile(split_file):
        raise FileNotFoundError(f'VOC image-set file not found: {split_file}')
    with open(split_file) as f:
        names = [line.strip() for line in f if line.strip()]
    labels = np.zeros((len(names), len(VOC_CLASSES)), dtype=np.uint8)
    for i, name in enumerate(names):
        xml_path = osp.join(voc_root, 'Annotations', f'{name}.xml')
        if not osp.isfile(xml_path):
            raise FileNotFoundError(f'VOC annotation not found: {xml_path}')
        for obj in ET.parse(xml_path).getroot().iter('object'):
            cls = obj.findtext('name', '').strip()
            if cls not in VOC_CLASSES:
                raise ValueError(f'{xml_path}: unknown VOC class {cls!r}')
            labels[i, VOC_CLASSES.index(cls)] = 1
    write_hashing_list(out_file, [f'JPEGImages/{n}.jpg' for n in names], labels)
    return len(names)


def flickr25k_hashing_lists(img_txt: str,
                            targets_txt: str,
                            perm_file: str,
                            out_dir: str,
                            num_query: int = 1000,
                            num_train: int = 4000) -> Dict[str, int]:
    """Make the official HyP2 FLICKR25K split as list files (``test.txt``, ``train.txt``,
    ``database.txt`` in ``out_dir``: the default file names of :class:`Flickr25kHashing`).

    The official code (JerryXu0129/HyP2-Loss) reads ``img.txt`` (one image file name a line, relative
    to ``mirflickr/``), ``targets.txt`` (one row of C = 38 whitespace-separated 0/1 labels a line, same
    order) and the fixed permutation ``flickr.txt`` (a JSON list of the N image indices). With
    ``perm`` that list: query = ``perm[:num_query]``, train = ``perm[num_query:num_query + num_train]``,
    database = ``perm[num_query + num_train:]``, each in permutation order.

    Returns:
        ``{'query': n_q, 'train': n_t, 'database': n_d}``.

    Raises:
        FileNotFoundError: a missing input file.
        ValueError: row counts that differ, labels other than 0/1, a permutation that is not one of
            ``0..N-1``, or ``num_query + num_train > N``.
    """
    for path in (img_txt, targets_txt, perm_file):
        if not osp.isfile(path):
            raise FileNotFoundError(f'FLICKR25K split: file not found: {path}')
    with open(img_txt, encoding='utf-8') as f:
        images = [line.strip() for line in f if line.strip()]
    rows = []
    with open(targets_txt, encoding='utf-8') as f:
        for lineno, line in enumerate(f, 1):
            values = line.split()
            if not values:
                continue
            rows.append(parse_label_row(values, f'{targets_txt}:{lineno}',
                                        len(rows[0]) if rows else None))
    if len(rows) != len(images):
        raise ValueError(f'FLICKR25K split: {len(images)} images in {img_txt} but {len(rows)} label '
                         f'rows in {targets_txt}')
    with open(perm_file, encoding='utf-8') as f:
        try:
            perm = json.load(f)
        except json.JSONDecodeError as exc:
            raise ValueError(f'{perm_file}: not a JSON list of indices ({exc})') from None
    n = len(images)
    if n == 0:
        raise ValueError(f'FLICKR25K split: {img_txt} and {targets_txt} list no image: nothing to split')
    if not isinstance(perm, list) or sorted(perm) != list(range(n)):
        raise ValueError(f'{perm_file}: must be a JSON list holding each index 0..{n - 1} once '
                         f'(a permutation of the {n} images)')
    if num_query < 0 or num_train < 0 or num_query + num_train > n:
        raise ValueError(f'FLICKR25K split: num_query={num_query} + num_train={num_train} must be '
                         f'non-negative and at most the {n} images')
    labels = np.asarray(rows, dtype=np.uint8).reshape(n, -1)
    parts = dict(query=perm[:num_query], train=perm[num_query:num_query + num_train],
                 database=perm[num_query + num_train:])
    empty = [split for split, index in parts.items() if not index]
    if empty:
        raise ValueError(f'FLICKR25K split: the {"/".join(empty)} split would be empty (num_query={num_query}, '
                         f'num_train={num_train}, {n} images); the datasets refuse empty list files')
    files = dict(query='test.txt', train='train.txt', database='database.txt')
    os.makedirs(out_dir, exist_ok=True)
    for split, index in parts.items():
        write_hashing_list(osp.join(out_dir, files[split]), [images[i] for i in index],
                           labels[index] if index else np.zeros((0, labels.shape[1]), np.uint8))
    return {split: len(index) for split, index in parts.items()}


@DATASETS.register_module()
class MultiLabelHashingDataset(BaseDataset):
    """Generic multi-label hashing dataset over list files, one per split.

    Args:
        split: 'train', 'query', 'database', or a list of them; with several splits the samples of
            each are concatenated in that order (e.g. ``['query', 'database']`` for evaluation) and
            every sample carries its ``split`` flag.
        ann_file: a list file (single split), or a dict split -> list file; None uses the class's
            ``DEFAULT_ANN_FILES``. Relative paths are joined with ``data_root``.
        data_root: dataset root.
        data_prefix: image folder (str or ``dict(img_path=...)``), relative to ``data_root``.
        num_classes: expected C; None infers it from ``classes`` or from the first list file.
        classes: class names (overrides the class's ``METAINFO``).
        metainfo / pipeline / test_mode / lazy_init / ...: as in :class:`mmengine.dataset.BaseDataset`.
    """
    METAINFO: dict = dict(classes=None)
    DEFAULT_ANN_FILES: Dict[str, str] = dict(train='train.txt', query='test.txt',
                                             database='database.txt')
    NUM_CLASSES: Optional[int] = None

    def __init__(self,
                 split: Union[str, Sequence[str]] = 'train',
                 ann_file: Union[None, str, Dict[str, str]] = None,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 num_classes: Optional[int] = None,
                 classes: Optional[Sequence[str]] = None,
                 metainfo: Optional[dict] = None,
                 **kwargs) -> None:
        splits = [split] if isinstance(split, str) else list(split)
        if not splits or any(s not in SPLITS for s in splits) or len(set(splits)) != len(splits):
            raise ValueError(f'{type(self).__name__}: split must be one or more distinct of {SPLITS}, '
                             f'got {split!r}')
        if ann_file is None:
            ann_files = {s: self.DEFAULT_ANN_FILES[s] for s in splits}
        elif isinstance(ann_file, str):
            if len(splits) != 1:
                raise ValueError(f'{type(self).__name__}: one ann_file for splits {splits}; give a '
                                 'dict split -> list file')
            ann_files = {splits[0]: ann_file}
        else:
            missing = [s for s in splits if s not in ann_file]
            if missing:
                raise ValueError(f'{type(self).__name__}: ann_file has no entry for split(s) {missing}')
            ann_files = {s: ann_file[s] for s in splits}
        self.splits = splits
        self.ann_files = {s: (f if osp.isabs(f) or not data_root else osp.join(data_root, f))
                          for s, f in ann_files.items()}
        if isinstance(data_prefix, str):
            data_prefix = dict(img_path=data_prefix)
        metainfo = dict(metainfo or {})
        if classes is not None:
            metainfo['classes'] = tuple(classes)
        self._num_classes = num_classes if num_classes is not None else self.NUM_CLASSES
        super().__init__(ann_file=ann_files[splits[0]], metainfo=metainfo, data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    def load_data_list(self) -> List[dict]:
        classes = self._metainfo.get('classes')
        num_classes = len(classes) if classes else self._num_classes
        if classes and self._num_classes is not None and len(classes) != self._num_classes:
            raise ValueError(f'{type(self).__name__}: {len(classes)} class names for '
                             f'num_classes={self._num_classes}')
        img_root = self.data_prefix.get('img_path', '') or ''
        data_list = []
        for split in self.splits:
            for img, multi_hot in parse_hashing_list(self.ann_files[split], num_classes):
                num_classes = len(multi_hot)
                data_list.append(
                    dict(img_path=osp.join(img_root, img),
                         gt_label=np.flatnonzero(multi_hot).astype(np.int64),
                         gt_score=multi_hot.astype(np.float32),
                         split=split))
        if not data_list:
            raise ValueError(f'{type(self).__name__}: empty list file(s) {list(self.ann_files.values())}: no '
                             '"image_path l_1 ... l_C" line, so the split has no image')
        if not classes:
            self._metainfo['classes'] = tuple(f'class_{i}' for i in range(num_classes))
        return data_list

    @property
    def num_classes(self) -> int:
        return len(self.metainfo['classes'])

    def get_cat_ids(self, idx: int) -> List[int]:
        """Class indices of sample ``idx`` (used by class-aware samplers)."""
        return self.get_data_info(idx)['gt_label'].tolist()

    def get_multi_hot(self) -> np.ndarray:
        """(N, C) uint8 labels of every sample."""
        return np.stack([self.get_data_info(i)['gt_score'] for i in range(len(self))]).astype(np.uint8)

    def get_splits(self) -> List[str]:
        """Split flag of every sample."""
        return [self.get_data_info(i)['split'] for i in range(len(self))]


@DATASETS.register_module()
class Flickr25kHashing(MultiLabelHashingDataset):
    """MIRFlickr-25k: 1000 query / 4000 train / the rest database (official HyP2 split, mAP@1000).

    The official HyP2 code uses 38 label columns (the 24 potential labels and 14 "relevant" ones);
    other deep-hashing code uses the 24. C is taken from the list file unless ``num_classes`` is set.
    Make the list files of the official split with :func:`flickr25k_hashing_lists`
    (``tools/hyp2_make_flickr25k_split.py``).
    """


@DATASETS.register_module()
class NUSWIDEHashing(MultiLabelHashingDataset):
    """NUS-WIDE restricted to the 21 most frequent concepts (10500 train / 2100 query, mAP@5000).
    Class names follow the list file's column order: pass ``classes=...`` to name them."""
    NUM_CLASSES = 21


@DATASETS.register_module()
class VOC2007Hashing(MultiLabelHashingDataset):
    """PASCAL VOC 2007: train = trainval, query = test, database = trainval (list files made by
    :func:`voc_hashing_list`)."""
    METAINFO = dict(classes=VOC_CLASSES)
    DEFAULT_ANN_FILES = dict(train='trainval.txt', query='test.txt', database='trainval.txt')


@DATASETS.register_module()
class VOC2012Hashing(MultiLabelHashingDataset):
    """PASCAL VOC 2012: train = train, query = val, database = train."""
    METAINFO = dict(classes=VOC_CLASSES)
    DEFAULT_ANN_FILES = dict(train='train.txt', query='val.txt', database='train.txt')


@DATASETS.register_module()
class COCOHashing(MultiLabelHashingDataset):
    """MS-COCO with the 80 object classes (list files train.txt / test.txt / database.txt)."""
    METAINFO = dict(classes=COCO_CLASSES)
