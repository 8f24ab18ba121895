"""Generate a tiny long-tailed image dataset in the ImageNet-LT list format.

The images are small PNGs whose content is a simple function of the class:
a class colour modulated by stripes of a class orientation and frequency,
with a random phase, brightness jitter and pixel noise. A tiny CNN learns
them in a few epochs, which makes the set useful for unit tests, the CPU
baseline and smoke runs of the full VL-LTR pipeline.

Layout under ``out_dir``::

    train/<class_name>/00000.png ...   (long-tailed, ``counts`` per class)
    val/<class_name>/...               (``val_per_class`` per class)
    test/<class_name>/...              (``test_per_class`` per class)
    ImageNet_LT_{train,val,test}.txt   ("train/red_horizontal/00000.png 0")
    labels.txt                         (class names, one per line)
    meta.json                          (arguments; a rebuild is skipped
                                        when they match)

Example::

    python tools/data/make_tiny_lt.py data/tiny_lt --num-classes 6
"""
import argparse
import json
import os
import os.path as osp
import shutil
from typing import Dict, List, Optional, Sequence

import numpy as np
from PIL import Image

# Training counts straddling the paper's many (>= 100) / few (<= 20)
# thresholds (paper §4.2), so every shot group is non-empty.
DEFAULT_COUNTS = (150, 100, 40, 20, 8, 3)
COLOURS = {
    'red': (220, 40, 40), 'green': (40, 180, 60), 'blue': (40, 80, 220),
    'yellow': (230, 210, 40), 'magenta': (200, 50, 200),
    'cyan': (40, 200, 210), 'orange': (240, 140, 30),
    'purple': (110, 50, 170), 'brown': (130, 80, 40),
    'pink': (250, 160, 190), 'grey': (128, 128, 128), 'olive': (120, 130, 30)
}
ORIENTATIONS = {
    'horizontal': 0.0, 'diagonal': 45.0, 'vertical': 90.0,
    'antidiagonal': 135.0
}
SPLITS = ('train', 'val', 'test')
_FORMAT_VERSION = 1


def default_counts(num_classes: int) -> List[int]:
    """Long-tailed training counts for ``num_classes`` classes.

    ``DEFAULT_COUNTS`` for 6 classes; otherwise the same profile resampled
    in log space, so the head keeps 150 images and the tail 3.
    """
    if num_classes == 1:
        return [DEFAULT_COUNTS[0]]
    src = np.linspace(0, 1, len(DEFAULT_COUNTS))
    dst = np.linspace(0, 1, num_classes)
    log_counts = np.interp(dst, src, np.log(DEFAULT_COUNTS))
    return [int(n) for n in np.rint(np.exp(log_counts))]


def class_specs(num_classes: int) -> List[dict]:
    """Name, colour, stripe angle and frequency of every class.

    Class c takes colour ``c % 12`` and an orientation chosen so that the
    first 48 classes are distinct (colour, orientation) pairs; later ones
    also differ in stripe frequency.
    """
    colours, orients = list(COLOURS), list(ORIENTATIONS)
    specs = []
    for c in range(num_classes):
        block = c // len(colours)
        colour = colours[c % len(colours)]
        orient = orients[(c + block) % len(orients)]
        name = f'{colour}_{orient}'
        cycle = block // len(orients)
        if cycle:
            name = f'{name}_{cycle}'
        specs.append(
            dict(name=name, rgb=COLOURS[colour],
                 angle=np.deg2rad(ORIENTATIONS[orient]),
                 freq=3.0 + cycle))
    return specs


def render(specs: List[dict], labels: np.ndarray, img_size: int,
           rng: np.random.Generator) -> np.ndarray:
    """Render one image per label.

    Args:
        specs (list[dict]): Output of :func:`class_specs`.
        labels (np.ndarray): Class of each image, int of shape [N].
        img_size (int): Side length S of the square images.
        rng (np.random.Generator): Source of the per-image randomness.

    Returns:
        np.ndarray: uint8 images of shape [N, S, S, 3] (RGB).
    """
    n = len(labels)
    rgb = np.array([s['rgb'] for s in specs], np.float32)[labels]
    angle = np.array([s['angle'] for s in specs])[labels]
    freq = np.array([s['freq'] for s in specs])[labels]
    angle = angle + rng.normal(0, np.deg2rad(8), n)
    phase = rng.uniform(0, 2 * np.pi, n)
    gain = rng.uniform(0.8, 1.2, (n, 1, 1, 1))
    yy, xx = np.mgrid[0:img_size, 0:img_size] / img_size
    # Stripes run along ``angle``, so the wave vector is perpendicular.
    proj = (np.cos(angle)[:, None, None] * yy -
            np.sin(angle)[:, None, None] * xx)
    stripes = np.sin(2 * np.pi * freq[:, None, None] * proj +
                     phase[:, None, None])
    shade = (0.65 + 0.35 * stripes)[..., None]
    img = rgb[:, None, None, :] * shade * gain
    img += rng.normal(0, 18, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _meta(num_classes, counts, img_size, val_per_class, test_per_class,
          seed) -> dict:
    return dict(
        format_version=_FORMAT_VERSION, num_classes=num_classes,
        counts=list(counts), img_size=img_size, val_per_class=val_per_class,
        test_per_class=test_per_class, seed=seed)


def _result(out_dir: str, meta: dict, built: bool) -> Dict:
    return dict(
        root=out_dir,
        classes=[s['name'] for s in class_specs(meta['num_classes'])],
        train_counts=list(meta['counts']),
        ann_files={s: osp.join(out_dir, f'ImageNet_LT_{s}.txt')
                   for s in SPLITS},
        labels_file=osp.join(out_dir, 'labels.txt'),
        built=built)


def make_tiny_lt(out_dir: str,
                 num_classes: int = 6,
                 counts: Optional[Sequence[int]] = None,
                 img_size: int = 32,
                 val_per_class: int = 4,
                 test_per_class: int = 10,
                 seed: int = 0) -> Dict:
    """Build (or reuse) a tiny long-tailed dataset under ``out_dir``.

    Args:
        out_dir (str): Output folder; created when missing.
        num_classes (int): Number of classes. Defaults to 6.
        counts (Sequence[int], optional): Training images per class.
            Defaults to None (:func:`default_counts`, i.e.
            ``[150, 100, 40, 20, 8, 3]`` for 6 classes).
        img_size (int): Image side in pixels. Defaults to 32.
        val_per_class (int): Validation images per class. Defaults to 4.
        test_per_class (int): Test images per class. Defaults to 10.
        seed (int): Seed; equal arguments give identical files.
            Defaults to 0.

    Returns:
        dict: ``root``, ``classes`` (names), ``train_counts``, ``ann_files``
        (split -> list file path), ``labels_file`` and ``built`` (False when
        an existing build with the same arguments was reused).

    Raises:
        ValueError: On invalid arguments.
        FileExistsError: If ``out_dir`` holds split folders that this tool
            did not write (no ``meta.json``).
    """
    if num_classes < 1:
        raise ValueError(f'num_classes must be >= 1, got {num_classes}')
    counts = default_counts(num_classes) if counts is None else [
        int(n) for n in counts]
    if len(counts) != num_classes:
        raise ValueError(f'counts has {len(counts)} entries but '
                         f'num_classes is {num_classes}')
    if min(counts) < 1 or min(val_per_class, test_per_class) < 1:
        raise ValueError('every split needs at least one image per class')
    if img_size < 8:
        raise ValueError(f'img_size must be >= 8, got {img_size}')

    meta = _meta(num_classes, counts, img_size, val_per_class,
                 test_per_class, seed)
    meta_file = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_file):
        with open(meta_file) as f:
            if json.load(f) == meta:
                return _result(out_dir, meta, built=False)
        os.remove(meta_file)  # the build below is partial until rewritten
        for split in SPLITS:
            shutil.rmtree(osp.join(out_dir, split), ignore_errors=True)
    elif any(osp.exists(osp.join(out_dir, s)) for s in SPLITS):
        raise FileExistsError(
            f'{out_dir} has split folders but no meta.json; refusing to '
            'overwrite files this tool did not write')

    specs = class_specs(num_classes)
    names = [s['name'] for s in specs]
    rng = np.random.default_rng(seed)
    per_split = dict(train=np.asarray(counts),
                     val=np.full(num_classes, val_per_class),
                     test=np.full(num_classes, test_per_class))
    for split in SPLITS:
        labels = np.repeat(np.arange(num_classes), per_split[split])
        # Index of each image within its class: 0, 1, ... per class.
        starts = np.cumsum(per_split[split]) - per_split[split]
        within = np.arange(len(labels)) - starts[labels]
        images = render(specs, labels, img_size, rng)
        for name in names:
            os.makedirs(osp.join(out_dir, split, name), exist_ok=True)
        lines = []
        for img, label, k in zip(images, labels, within):
            rel = f'{split}/{names[label]}/{k:05d}.png'
            Image.fromarray(img).save(osp.join(out_dir, rel))
            lines.append(f'{rel} {label}\n')
        with open(osp.join(out_dir, f'ImageNet_LT_{split}.txt'), 'w') as f:
            f.writelines(lines)
    with open(osp.join(out_dir, 'labels.txt'), 'w') as f:
        f.write(''.join(f'{name}\n' for name in names))
    # Written last: its presence marks a complete build.
    with open(meta_file, 'w') as f:
        json.dump(meta, f, indent=2)
    return _result(out_dir, meta, built=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Generate a tiny long-tailed dataset (ImageNet-LT '
        'list format).')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--num-classes', type=int, default=6)
    parser.add_argument(
        '--counts', type=int, nargs='+', default=None,
        help='training images per class (default: 150 100 40 20 8 3 '
        'resampled to --num-classes)')
    parser.add_argument('--img-size', type=int, default=32)
    parser.add_argument('--val-per-class', type=int, default=4)
    parser.add_argument('--test-per-class', type=int, default=10)
    parser.add_argument('--seed', type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    info = make_tiny_lt(
        args.out_dir, num_classes=args.num_classes, counts=args.counts,
        img_size=args.img_size, val_per_class=args.val_per_class,
        test_per_class=args.test_per_class, seed=args.seed)
    state = 'built' if info['built'] else 'up to date'
    print(f"{info['root']}: {state}; {len(info['classes'])} classes, "
          f"train counts {info['train_counts']}")


if __name__ == '__main__':
    main()
