"""Unpaired content / style image folders for arbitrary style transfer.

:class:`UnpairedStyleDataset` scans a content folder and a style folder (e.g. COCO and WikiArt):

* training (``test_mode=False``): item ``i`` is content image ``i mod n_content`` with a style
  image drawn uniformly at random on every access (random pairs); the length is
  ``max(n_content, n_style)`` unless ``num_pairs`` is given;
* testing (``test_mode=True``): every (content, style) combination, content-major
  (``content = i // n_style``, ``style = i mod n_style``), so that each style is seen with
  several contents -- the style-distance metric needs that -- optionally cut to ``num_pairs``.

Every item carries ``content_path``, ``style_path``, ``content_id`` and ``style_id`` (the images'
indices in the sorted folders). The pipeline transforms, registered in mmengine's root
``TRANSFORMS``, work with Pillow alone:

* :class:`LoadStylePair` -- read both images as RGB ``uint8`` ``(H, W, 3)`` arrays;
* :class:`ResizeCropStylePair` -- resize the shorter side, then crop (random or centre);
* :class:`PackStylePairInputs` -- ``inputs = dict(content, style)`` as ``(3, H, W)`` uint8
  tensors and a ``BaseDataElement`` with the paths and ids as metainfo.
"""
import os
import os.path as osp
import random
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.dataset import BaseDataset
from mmengine.registry import DATASETS, TRANSFORMS
from mmengine.structures import BaseDataElement

__all__ = [
    'UnpairedStyleDataset', 'LoadStylePair', 'ResizeCropStylePair', 'PackStylePairInputs',
    'scan_images', 'IMG_EXTENSIONS', 'export_skimage_samples', 'default_pipeline'
]

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')


def scan_images(root: str,
                extensions: Sequence[str] = IMG_EXTENSIONS,
                recursive: bool = True) -> List[str]:
    """Sorted paths of the image files under ``root`` (or ``[root]`` if it is an image file)."""
    exts = tuple(e.lower() for e in extensions)
    if osp.isfile(root):
        if not root.lower().endswith(exts):
            raise ValueError(f'{root} is not an image file with one of the extensions {exts}')
        return [root]
    if not osp.isdir(root):
        raise FileNotFoundError(f'image folder "{root}" does not exist')
    paths = []
    if recursive:
        for dirpath, _, files in os.walk(root, followlinks=True):
            paths += [osp.join(dirpath, f) for f in files if f.lower().endswith(exts)]
    else:
        paths = [osp.join(root, f) for f in os.listdir(root) if f.lower().endswith(exts)]
    return sorted(paths)


@DATASETS.register_module()
class UnpairedStyleDataset(BaseDataset):
    """Random (training) or exhaustive (testing) pairs of content and style images.

    Args:
        content_root: folder of content images (or one image file); relative to ``data_root``.
        style_root: folder of style images (or one image file); relative to ``data_root``.
        data_root: optional common root.
        pipeline: transforms (configs or callables).
        test_mode: exhaustive deterministic pairs instead of random ones.
        num_pairs: dataset length (training) / cap on the number of pairs (testing).
        extensions: image file extensions to collect.
        recursive: also search sub-folders.
        seed: seed of the style sampler used in training (``None``: Python's global RNG, which
            mmengine seeds per worker).
        lazy_init / max_refetch: as in ``mmengine.dataset.BaseDataset``.
    """

    def __init__(self,
                 content_root: str,
                 style_root: str,
                 data_root: str = '',
                 pipeline: Sequence[Union[dict, Callable]] = (),
                 test_mode: bool = False,
                 num_pairs: Optional[int] = None,
                 extensions: Sequence[str] = IMG_EXTENSIONS,
                 recursive: bool = True,
                 seed: Optional[int] = None,
                 lazy_init: bool = False,
                 max_refetch: int = 1000) -> None:
        if num_pairs is not None and num_pairs < 1:
            raise ValueError(f'num_pairs must be >= 1, got {num_pairs}')
        self.content_root = osp.join(data_root, content_root) if data_root else content_root
        self.style_root = osp.join(data_root, style_root) if data_root else style_root
        self.num_pairs = num_pairs
        self.extensions = tuple(extensions)
        self.recursive = recursive
        self._rng = random.Random(seed) if seed is not None else random
        self.content_paths: List[str] = []
        self.style_paths: List[str] = []
        super().__init__(
            data_root=data_root,
            pipeline=list(pipeline),
            test_mode=test_mode,
            serialize_data=False,
            lazy_init=lazy_init,
            max_refetch=max_refetch)

    def load_data_list(self) -> List[dict]:
        self.content_paths = scan_images(self.content_root, self.extensions, self.recursive)
        self.style_paths = scan_images(self.style_root, self.extensions, self.recursive)
        for name, paths, root in (('content', self.content_paths, self.content_root),
                                  ('style', self.style_paths, self.style_root)):
            if not paths:
                raise FileNotFoundError(f'no {name} images with extensions {self.extensions} '
                                        f'found under "{root}"')
        n_c, n_s = len(self.content_paths), len(self.style_paths)
        if self.test_mode:
            pairs = [(c, s) for c in range(n_c) for s in range(n_s)]
            if self.num_pairs is not None:
                pairs = pairs[:self.num_pairs]
        else:
            length = self.num_pairs if self.num_pairs is not None else max(n_c, n_s)
            pairs = [(i % n_c, None) for i in range(length)]
        return [dict(content_id=c, style_id=s) for c, s in pairs]

    def get_data_info(self, idx: int) -> dict:
        info = dict(super().get_data_info(idx))
        if info['style_id'] is None:  # random pair, drawn anew on every access
            info['style_id'] = self._rng.randrange(len(self.style_paths))
        info['content_path'] = self.content_paths[info['content_id']]
        info['style_path'] = self.style_paths[info['style_id']]
        return info


def _read_rgb(path: str) -> np.ndarray:
    from PIL import Image
    if not osp.isfile(path):
        raise FileNotFoundError(f'image file "{path}" does not exist')
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert('RGB'), dtype=np.uint8).copy()
    except OSError as err:
        raise OSError(f'cannot read image "{path}": {err}') from err


@TRANSFORMS.register_module()
class LoadStylePair:
    """Read ``content_path`` / ``style_path`` into ``content_img`` / ``style_img`` (RGB uint8
    ``(H, W, 3)``; grey and RGBA images are converted)."""

    def __call__(self, results: dict) -> dict:
        for key in ('content', 'style'):
            if f'{key}_path' not in results:
                raise KeyError(f'LoadStylePair needs "{key}_path" in the results')
            img = _read_rgb(results[f'{key}_path'])
            results[f'{key}_img'] = img
            results[f'{key}_ori_shape'] = img.shape[:2]
        return results

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}()'


def _resize_short(img: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image
    h, w = img.shape[:2]
    scale = size / min(h, w)
    new_w, new_h = max(size, round(w * scale)), max(size, round(h * scale))
    if (new_h, new_w) == (h, w):
        return img
    return np.asarray(Image.fromarray(img).resize((new_w, new_h), Image.BICUBIC))


@TRANSFORMS.register_module()
class ResizeCropStylePair:
    """Resize the shorter side of both images, then crop a square from each.

    AdaIN trains on 256x256 random crops of images resized to 512; the shorter-side resize keeps
    the aspect ratio (the original resized to 512x512 squarely).

    Args:
        scale: shorter-side length after resizing (``None``: no resize).
        crop_size: side of the square crop (``None``: no crop); must not exceed ``scale``.
        random_crop: random crop position (training) instead of the centre (testing).
        keys: which images to process.
    """

    def __init__(self,
                 scale: Optional[int] = 512,
                 crop_size: Optional[int] = 256,
                 random_crop: bool = True,
                 keys: Sequence[str] = ('content', 'style')) -> None:
        if scale is not None and scale < 1 or crop_size is not None and crop_size < 1:
            raise ValueError(f'scale and crop_size must be positive, got {scale}, {crop_size}')
        if scale is not None and crop_size is not None and crop_size > scale:
            raise ValueError(f'crop_size ({crop_size}) must not exceed scale ({scale})')
        self.scale = scale
        self.crop_size = crop_size
        self.random_crop = random_crop
        self.keys = tuple(keys)

    def _crop(self, img: np.ndarray) -> np.ndarray:
        h, w = img.shape[:2]
        size = self.crop_size
        if h < size or w < size:
            raise ValueError(f'image of size {h}x{w} is smaller than crop_size={size}; set '
                             'scale >= crop_size')
        if self.random_crop:
            top, left = random.randint(0, h - size), random.randint(0, w - size)
        else:
            top, left = (h - size) // 2, (w - size) // 2
        return img[top:top + size, left:left + size]

    def __call__(self, results: dict) -> dict:
        for key in self.keys:
            img = results[f'{key}_img']
            if self.scale is not None:
                img = _resize_short(img, self.scale)
            if self.crop_size is not None:
                img = self._crop(img)
            results[f'{key}_img'] = np.ascontiguousarray(img)
        return results

    def __repr__(self) -> str:
        return (f'{self.__class__.__name__}(scale={self.scale}, crop_size={self.crop_size}, '
                f'random_crop={self.random_crop})')


@TRANSFORMS.register_module()
class PackStylePairInputs:
    """Pack to ``dict(inputs=dict(content, style), data_samples=BaseDataElement)``.

    Images become ``(3, H, W)`` uint8 tensors; ``meta_keys`` present in the results go into the
    data sample's metainfo.
    """

    def __init__(self,
                 meta_keys: Sequence[str] = ('content_path', 'style_path', 'content_id',
                                             'style_id', 'content_ori_shape',
                                             'style_ori_shape')) -> None:
        self.meta_keys = tuple(meta_keys)

    def __call__(self, results: dict) -> dict:
        inputs = {}
        for key in ('content', 'style'):
            img = results.get(f'{key}_img')
            if img is None:
                raise KeyError(f'PackStylePairInputs needs "{key}_img"; add LoadStylePair first')
            if img.ndim != 3 or img.shape[2] != 3:
                raise ValueError(f'{key}_img must be (H, W, 3), got {img.shape}')
            inputs[key] = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        meta = {k: results[k] for k in self.meta_keys if k in results}
        return dict(inputs=inputs, data_samples=BaseDataElement(metainfo=meta))

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(meta_keys={self.meta_keys})'


def default_pipeline(scale: Optional[int], crop_size: Optional[int],
                     random_crop: bool) -> List[dict]:
    """The usual pipeline: load, resize + crop, pack."""
    return [
        dict(type='LoadStylePair'),
        dict(type='ResizeCropStylePair', scale=scale, crop_size=crop_size,
             random_crop=random_crop),
        dict(type='PackStylePairInputs'),
    ]


#: scikit-image sample images bundled in its wheel (no download): photos as contents, scientific
#: images / a colour wheel / a texture as styles.
SKIMAGE_CONTENTS = ('astronaut', 'coffee', 'chelsea', 'rocket')
SKIMAGE_STYLES = ('hubble_deep_field', 'immunohistochemistry', 'colorwheel', 'gravel')


def export_skimage_samples(out_dir: str,
                           contents: Sequence[str] = SKIMAGE_CONTENTS,
                           styles: Sequence[str] = SKIMAGE_STYLES,
                           max_side: Optional[int] = 512,
                           force: bool = False) -> dict:
    """Write scikit-image's bundled sample images to ``out_dir/{content,style}/NAME.png``.

    Only images shipped inside the scikit-image wheel are used (nothing is downloaded). Grey
    images are converted to RGB; images are downscaled so that their longer side is at most
    ``max_side``. Every file is written atomically (a temporary file renamed onto the name), and
    files that already exist are refused, all of them before the first is written, unless
    ``force`` (``tools/style_transfer.py --export-samples DIR --force``).

    Returns:
        ``dict(content=[paths], style=[paths])``.
    """
    from PIL import Image

    from mmkd_plugins.utils import require
    from mmkd_plugins.utils.safe_output import atomic_write, check_output_files
    data = require('skimage.data', 'the style-transfer sample images')
    planned = {}
    for kind, names in (('content', contents), ('style', styles)):
        for name in names:
            loader = getattr(data, name, None)
            if loader is None:
                raise ValueError(f'skimage.data has no image called {name!r}')
            planned.setdefault(kind, []).append((loader, osp.join(out_dir, kind, f'{name}.png')))
    check_output_files([path for items in planned.values() for _, path in items], force=force,
                       what='--export-samples output')
    written = {'content': [], 'style': []}
    for kind, items in planned.items():
        os.makedirs(osp.join(out_dir, kind), exist_ok=True)
        for loader, path in items:
            img = np.asarray(loader())
            if img.dtype == bool:
                img = img.astype(np.uint8) * 255
            pil = Image.fromarray(img.astype(np.uint8)).convert('RGB')
            if max_side is not None and max(pil.size) > max_side:
                scale = max_side / max(pil.size)
                pil = pil.resize((max(1, round(pil.width * scale)),
                                  max(1, round(pil.height * scale))), Image.BICUBIC)
            with atomic_write(path, 'wb') as fh:
                pil.save(fh, format='PNG')
            written[kind].append(path)
    return written
