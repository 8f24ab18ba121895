"""Build Digits-LT: a long-tailed split of scikit-learn's handwritten digits.

The source is ``sklearn.datasets.load_digits()``: 1797 real 8x8 scans of
handwritten digits (the test part of the UCI "Optical Recognition of
Handwritten Digits" set; every pixel counts the ink in a 4x4 block of a
32x32 bitmap, values 0..16), 174 to 183 images per class. The data ships
inside the scikit-learn package, so no network is needed. Training counts
follow the exponential profile of CIFAR-LT (``long_tail_counts`` of
``make_fashion_mnist_lt.py``),

    n_i = floor(n_max * (1 / IF) ** (i / (C - 1))),   i = 0 .. C-1,

which for n_max = 140, IF = 50 gives 140, 90, 58, 38, 24, 15, 10, 6, 4, 2.
A seeded permutation of the ten classes decides which class gets which
count. From the images of each class not used for training, the val split
takes ``val_per_class`` and the test split another ``test_per_class``
(balanced and disjoint). Every class must hold its training count plus
``val_per_class + test_per_class`` images; this is checked before anything
is written.

Images are scaled from 0..16 to 0..255, enlarged to ``size`` pixels with
bicubic interpolation and saved as grey PNGs, white digits on black like
the source.

Layout under ``out_dir`` (ImageNet-LT list format)::

    train/<class name>/<source index>.png    (size x size grey PNGs)
    val/<class name>/<source index>.png
    test/<class name>/<source index>.png
    DigitsLT_{train,val,test}.txt   ("train/seven/00042.png 7")
    labels.txt        (zero, one, ..., nine, one per line, label order)
    meta.json         (arguments and resulting counts; an identical request
                       is skipped)

Example::

    python tools/data/make_digits_lt.py data/demo/digits_lt
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import shutil
from typing import Dict, Tuple

import numpy as np
from PIL import Image

#: Names of the labels 0..9, also the class folder names.
CLASS_NAMES = ('zero', 'one', 'two', 'three', 'four', 'five', 'six',
               'seven', 'eight', 'nine')
SPLITS = ('train', 'val', 'test')
LIST_NAME = 'DigitsLT_{}.txt'
#: Largest pixel value of ``load_digits`` (ink pixels per 4x4 block).
SOURCE_MAX = 16
_FORMAT_VERSION = 1


def _load_fashion_tool():
    path = osp.join(osp.dirname(osp.abspath(__file__)),
                    'make_fashion_mnist_lt.py')
    spec = importlib.util.spec_from_file_location('make_fashion_mnist_lt',
                                                  path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


#: ``n_i = floor(n_max * imb_factor ** (-i / (C - 1)))``, shared with
#: Fashion-MNIST-LT.
long_tail_counts = _load_fashion_tool().long_tail_counts


def load_digits_arrays() -> Tuple[np.ndarray, np.ndarray, str]:
    """The scikit-learn digits as arrays.

    Returns:
        tuple[np.ndarray, np.ndarray, str]: images ``[1797, 8, 8]`` float64
        in 0..16, labels ``[1797]`` int64 and a description of the source.

    Raises:
        ImportError: If scikit-learn is not installed.
    """
    try:
        import sklearn
        from sklearn.datasets import load_digits
    except ImportError as e:
        raise ImportError(
            "the digits come with scikit-learn: pip install "
            "'scikit-learn>=1.3'") from e
    digits = load_digits()
    return (np.asarray(digits.images), np.asarray(digits.target, np.int64),
            f'sklearn.datasets.load_digits (scikit-learn '
            f'{sklearn.__version__})')


def to_image(pixels: np.ndarray, size: int) -> Image.Image:
    """One 8x8 scan as a grey PIL image of ``size`` x ``size`` pixels.

    Args:
        pixels (np.ndarray): ``[8, 8]`` values in 0..16.
        size (int): Output side length; bicubic resize when not 8.

    Returns:
        Image.Image: Mode ``'L'``, white digit on black.
    """
    grey = np.clip(np.rint(pixels * (255 / SOURCE_MAX)), 0, 255)
    img = Image.fromarray(grey.astype(np.uint8), mode='L')
    if img.size != (size, size):
        img = img.resize((size, size), Image.BICUBIC)
    return img


def check_class_sizes(class_sizes: np.ndarray, train_counts: np.ndarray,
                      val_per_class: int, test_per_class: int) -> None:
    """Check that every class can fill its three splits.

    Args:
        class_sizes (np.ndarray): Images available per label.
        train_counts (np.ndarray): Training images per label.
        val_per_class (int): Val images per class.
        test_per_class (int): Test images per class.

    Raises:
        ValueError: Naming the first class that has too few images.
    """
    for c, (have, n) in enumerate(zip(class_sizes, train_counts)):
        need = int(n) + val_per_class + test_per_class
        if need > have:
            raise ValueError(
                f"class '{CLASS_NAMES[c]}' has {int(have)} images but needs "
                f'{int(n)} train + {val_per_class} val + {test_per_class} '
                f'test = {need}; lower --n-max, --val-per-class or '
                '--test-per-class')


def _select(labels: np.ndarray, train_counts: np.ndarray, val_per_class: int,
            test_per_class: int, rng: np.random.Generator) -> Dict:
    """Source indices of every split, sorted by (label, index)."""
    picked = {split: [] for split in SPLITS}
    for c in range(len(CLASS_NAMES)):
        pool = rng.permutation(np.flatnonzero(labels == c))
        ends = np.cumsum([train_counts[c], val_per_class, test_per_class])
        for split, chunk in zip(SPLITS, np.split(pool[:ends[-1]], ends[:2])):
            picked[split].append(np.sort(chunk))
    return {split: np.concatenate(idx) for split, idx in picked.items()}


def _result(out_dir: str, meta: dict, built: bool) -> Dict:
    return dict(
        root=out_dir, classes=list(CLASS_NAMES),
        train_counts=list(meta['train_counts']),
        class_order=list(meta['class_order']),
        class_sizes=list(meta['class_sizes']),
        ann_files={s: osp.join(out_dir, LIST_NAME.format(s))
                   for s in SPLITS},
        labels_file=osp.join(out_dir, 'labels.txt'), built=built,
        source=meta['source'])


def make_digits_lt(out_dir: str,
                   n_max: int = 140,
                   imb_factor: float = 50.,
                   val_per_class: int = 10,
                   test_per_class: int = 20,
                   seed: int = 0,
                   size: int = 28) -> Dict:
    """Build (or reuse) Digits-LT under ``out_dir``.

    Args:
        out_dir (str): Output folder; created when missing.
        n_max (int): Training images of the largest class. Defaults to 140.
        imb_factor (float): Largest / smallest class size. Defaults to 50.
        val_per_class (int): Val images per class. Defaults to 10.
        test_per_class (int): Test images per class. Defaults to 20.
        seed (int): Seed of class order and image choice; equal arguments
            give identical files. Defaults to 0.
        size (int): Side length of the saved PNGs. Defaults to 28.

    Returns:
        dict: ``root``, ``classes``, ``train_counts`` (per label),
        ``class_order`` (label of the i-th largest class), ``class_sizes``
        (source images per label), ``ann_files`` (split -> list file),
        ``labels_file``, ``built`` (False when an identical build was
        reused) and ``source``.

    Raises:
        ValueError: On arguments the source cannot satisfy.
        FileExistsError: If ``out_dir`` holds split folders without a
            ``meta.json`` of this tool.
    """
    counts = long_tail_counts(len(CLASS_NAMES), n_max, imb_factor)
    if counts[-1] < 1 or min(val_per_class, test_per_class) < 1:
        raise ValueError('every split needs at least one image per class; '
                         f'train counts would be {counts}')
    if size < 1:
        raise ValueError(f'size must be positive, got {size}')
    images, labels, source = load_digits_arrays()
    class_sizes = np.bincount(labels, minlength=len(CLASS_NAMES))
    rng = np.random.default_rng(seed)
    class_order = rng.permutation(len(CLASS_NAMES))
    train_counts = np.empty(len(CLASS_NAMES), np.int64)
    train_counts[class_order] = counts
    check_class_sizes(class_sizes, train_counts, val_per_class,
                      test_per_class)

    args = dict(format_version=_FORMAT_VERSION, n_max=n_max,
                imb_factor=imb_factor, val_per_class=val_per_class,
                test_per_class=test_per_class, seed=seed, size=size)
    meta_file = osp.join(out_dir, 'meta.json')
    if osp.isfile(meta_file):
        with open(meta_file) as f:
            meta = json.load(f)
        if meta.get('args') == args:
            return _result(out_dir, meta, built=False)
        os.remove(meta_file)  # the build below is partial until rewritten
        for split in SPLITS:
            shutil.rmtree(osp.join(out_dir, split), ignore_errors=True)
    elif any(osp.exists(osp.join(out_dir, s)) for s in SPLITS):
        raise FileExistsError(
            f'{out_dir} has split folders but no meta.json; refusing to '
            'overwrite files this tool did not write')

    picked = _select(labels, train_counts, val_per_class, test_per_class,
                     rng)
    for split in SPLITS:
        for name in CLASS_NAMES:
            os.makedirs(osp.join(out_dir, split, name), exist_ok=True)
        lines = []
        for i in picked[split]:
            label = int(labels[i])
            rel = f'{split}/{CLASS_NAMES[label]}/{i:05d}.png'
            to_image(images[i], size).save(osp.join(out_dir, rel))
            lines.append(f'{rel} {label}\n')
        with open(osp.join(out_dir, LIST_NAME.format(split)), 'w') as f:
            f.writelines(lines)
    with open(osp.join(out_dir, 'labels.txt'), 'w') as f:
        f.write(''.join(f'{name}\n' for name in CLASS_NAMES))
    meta = dict(args=args, train_counts=train_counts.tolist(),
                class_order=class_order.tolist(),
                class_sizes=class_sizes.tolist(), source=source)
    # Written last: its presence marks a complete build.
    with open(meta_file, 'w') as f:
        json.dump(meta, f, indent=2)
    return _result(out_dir, meta, built=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Build Digits-LT from scikit-learn\'s 8x8 handwritten '
        'digits (ImageNet-LT list format).')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--n-max', type=int, default=140)
    parser.add_argument('--imb-factor', type=float, default=50.)
    parser.add_argument('--val-per-class', type=int, default=10)
    parser.add_argument('--test-per-class', type=int, default=20)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--size', type=int, default=28,
                        help='side length of the saved PNGs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        info = make_digits_lt(
            args.out_dir, n_max=args.n_max, imb_factor=args.imb_factor,
            val_per_class=args.val_per_class,
            test_per_class=args.test_per_class, seed=args.seed,
            size=args.size)
    except (ValueError, FileExistsError, ImportError) as e:
        raise SystemExit(f'error: {e}')
    state = 'built' if info['built'] else 'up to date'
    counts = ', '.join(f'{CLASS_NAMES[c]} {info["train_counts"][c]}'
                       for c in info['class_order'])
    print(f"{info['root']}: {state} from {info['source']}; train counts "
          f'{counts}')
    print(f'{"class":<6} {"train":>5} {"val":>4} {"test":>4} '
          f'{"source":>6}')
    for c, name in enumerate(CLASS_NAMES):
        print(f'{name:<6} {info["train_counts"][c]:>5} '
              f'{args.val_per_class:>4} {args.test_per_class:>4} '
              f'{info["class_sizes"][c]:>6}')


if __name__ == '__main__':
    main()
