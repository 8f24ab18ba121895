"""Build Fashion-MNIST-LT: a long-tailed split of real Fashion-MNIST images.

The source is the Debian package ``dataset-fashion-mnist`` (the four
official idx files under ``/usr/share/datasets/fashion-mnist``), or, when
those files are absent, torchvision's ``FashionMNIST`` download (network
needed once). Training counts follow the exponential profile of CIFAR-LT,

    n_i = floor(n_max * (1 / IF) ** (i / (C - 1))),   i = 0 .. C-1,

which for n_max = 500, IF = 100 gives 500, 299, 179, 107, 64, 38, 23, 13,
8, 5 (four many-shot, three medium-shot, three few-shot classes under the
paper's >100 / <20 thresholds). A seeded permutation of the ten classes
decides which class gets which count. The val split takes
``val_per_class`` official training images not used for training, the
test split ``test_per_class`` official test images per class (balanced).

Layout under ``out_dir`` (ImageNet-LT list format)::

    train/<class_dir>/train_<official index>.png    (28x28 grey PNGs)
    val/<class_dir>/train_<official index>.png
    test/<class_dir>/t10k_<official index>.png
    FashionMNIST_LT_{train,val,test}.txt   ("train/dress/train_00042.png 3")
    labels.txt        (the ten class names, one per line, label order)
    meta.json         (arguments and resulting counts; an identical request
                       is skipped)

Example::

    python tools/data/make_fashion_mnist_lt.py data/demo/fashion_mnist_lt
"""
import argparse
import json
import os
import os.path as osp
import shutil
import sys
from typing import Dict, List, Optional, Tuple

import numpy as np
from PIL import Image

# The idx readers live beside this script (also when it is loaded by path).
sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from fashion_mnist_idx import (  # noqa: E402,F401 (read_idx: public)
    IDX_FILES,
    Arrays,
    download_with_torchvision,
    idx_path,
    read_idx,
    read_source_dir,
)

DEBIAN_PACKAGE = 'dataset-fashion-mnist'
DEBIAN_DIR = '/usr/share/datasets/fashion-mnist'
#: Readable names of the official labels 0..9 (T-shirt/top ... Ankle boot).
CLASS_NAMES = ('t-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
               'shirt', 'sneaker', 'bag', 'ankle boot')
SPLITS = ('train', 'val', 'test')
LIST_NAME = 'FashionMNIST_LT_{}.txt'
_FORMAT_VERSION = 1


def long_tail_counts(num_classes: int = 10,
                     n_max: int = 500,
                     imb_factor: float = 100.) -> List[int]:
    """Exponential long-tailed profile, head first.

    Args:
        num_classes (int): Number of classes C. Defaults to 10.
        n_max (int): Images of the largest class. Defaults to 500.
        imb_factor (float): Ratio of largest to smallest count.
            Defaults to 100.

    Returns:
        list[int]: ``floor(n_max * imb_factor ** (-i / (C - 1)))``.
    """
    if num_classes < 2 or n_max < 1 or imb_factor < 1:
        raise ValueError('need num_classes >= 2, n_max >= 1 and '
                         f'imb_factor >= 1, got {num_classes}, {n_max}, '
                         f'{imb_factor}')
    exponent = np.arange(num_classes) / (num_classes - 1)
    # The small epsilon keeps exact products such as 500 * 0.01 from
    # flooring to 4 through rounding error.
    counts = np.floor(n_max * float(imb_factor)**-exponent + 1e-6)
    return [int(n) for n in counts]


def class_dir(name: str) -> str:
    """Folder name of a class (no spaces, so list lines stay two fields)."""
    return name.replace(' ', '_')


def load_fashion_mnist(source_dir: Optional[str] = None,
                       download_dir: Optional[str] = None,
                       download: bool = True) -> Tuple[Arrays, str]:
    """Official Fashion-MNIST train and test arrays.

    Args:
        source_dir (str, optional): Folder with the four idx files. Defaults
            to the Debian package folder :data:`DEBIAN_DIR` when it has them.
        download_dir (str, optional): Where torchvision stores a download
            (reused when its files are already there). Required for the
            download route.
        download (bool): Fall back to torchvision when ``source_dir`` (or
            the Debian folder) lacks the files. Defaults to True.

    Returns:
        tuple[dict, str]: ``{'train': (images [60000, 28, 28] uint8,
        labels [60000] uint8), 'test': (...)}`` and a description of the
        source used.
    """
    if source_dir is not None:
        return read_source_dir(source_dir), source_dir
    if all(idx_path(DEBIAN_DIR, s) for stems in IDX_FILES.values()
           for s in stems):
        return read_source_dir(DEBIAN_DIR), DEBIAN_DIR
    hint = (f"install the Debian package '{DEBIAN_PACKAGE}' "
            f'(apt-get install {DEBIAN_PACKAGE}; files in {DEBIAN_DIR}) or '
            'let torchvision download Fashion-MNIST (network needed)')
    if not download or download_dir is None:
        raise FileNotFoundError(
            f'Fashion-MNIST not found in {DEBIAN_DIR} and downloading is '
            f'off: {hint}.')
    try:
        arrays = download_with_torchvision(download_dir)
        return arrays, f'torchvision:{download_dir}'
    except (OSError, RuntimeError) as e:
        raise RuntimeError(f'Fashion-MNIST not found in {DEBIAN_DIR} and '
                           f'the download failed ({e}): {hint}.') from e


def _select(arrays: Arrays, train_counts: np.ndarray, val_per_class: int,
            test_per_class: int, rng: np.random.Generator) -> Dict:
    """Official indices of every split, sorted by (label, index)."""
    picked = {split: [] for split in SPLITS}
    _, train_labels = arrays['train']
    _, test_labels = arrays['test']
    for c in range(len(CLASS_NAMES)):
        pool = rng.permutation(np.flatnonzero(train_labels == c))
        n = train_counts[c]
        picked['train'].append(np.sort(pool[:n]))
        picked['val'].append(np.sort(pool[n:n + val_per_class]))
    for c in range(len(CLASS_NAMES)):
        pool = rng.permutation(np.flatnonzero(test_labels == c))
        picked['test'].append(np.sort(pool[:test_per_class]))
    return {split: np.concatenate(idx) for split, idx in picked.items()}


def _result(out_dir: str, meta: dict, built: bool) -> Dict:
    return dict(
        root=out_dir, classes=list(CLASS_NAMES),
        train_counts=list(meta['train_counts']),
        class_order=list(meta['class_order']),
        ann_files={s: osp.join(out_dir, LIST_NAME.format(s))
                   for s in SPLITS},
        labels_file=osp.join(out_dir, 'labels.txt'), built=built,
        source=meta['source'])


def make_fashion_mnist_lt(out_dir: str,
                          n_max: int = 500,
                          imb_factor: float = 100.,
                          val_per_class: int = 20,
                          test_per_class: int = 100,
                          seed: int = 0,
                          source_dir: Optional[str] = None,
                          download_dir: Optional[str] = None,
                          download: bool = True) -> Dict:
    """Build (or reuse) Fashion-MNIST-LT under ``out_dir``.

    Args:
        out_dir (str): Output folder; created when missing.
        n_max (int): Training images of the largest class. Defaults to 500.
        imb_factor (float): Largest / smallest class size. Defaults to 100.
        val_per_class (int): Val images per class, official training images
            unused by the train split. Defaults to 20.
        test_per_class (int): Test images per class from the official test
            set (1000 per class there). Defaults to 100.
        seed (int): Seed of class order and image choice; equal arguments
            give identical files. Defaults to 0.
        source_dir (str, optional): Folder with the official idx files.
            Defaults to None (Debian package folder, else download).
        download_dir (str, optional): torchvision download folder. Defaults
            to ``<out_dir>/download``.
        download (bool): Allow the torchvision route. Defaults to True.

    Returns:
        dict: ``root``, ``classes``, ``train_counts`` (per label),
        ``class_order`` (label of the i-th largest class), ``ann_files``
        (split -> list file), ``labels_file``, ``built`` (False when an
        identical build was reused) and ``source``.

    Raises:
        ValueError: On arguments the official splits cannot satisfy.
        FileExistsError: If ``out_dir`` holds split folders without a
            ``meta.json`` of this tool.
    """
    counts = long_tail_counts(len(CLASS_NAMES), n_max, imb_factor)
    if counts[-1] < 1 or min(val_per_class, test_per_class) < 1:
        raise ValueError('every split needs at least one image per class; '
                         f'train counts would be {counts}')
    if n_max + val_per_class > 6000 or test_per_class > 1000:
        raise ValueError('Fashion-MNIST has 6000 train / 1000 test images '
                         f'per class; n_max + val_per_class = '
                         f'{n_max + val_per_class}, test_per_class = '
                         f'{test_per_class}')
    args = dict(format_version=_FORMAT_VERSION, n_max=n_max,
                imb_factor=imb_factor, val_per_class=val_per_class,
                test_per_class=test_per_class, seed=seed)
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

    arrays, source = load_fashion_mnist(
        source_dir, download_dir or osp.join(out_dir, 'download'), download)
    rng = np.random.default_rng(seed)
    class_order = rng.permutation(len(CLASS_NAMES))
    train_counts = np.empty(len(CLASS_NAMES), np.int64)
    train_counts[class_order] = counts
    picked = _select(arrays, train_counts, val_per_class, test_per_class,
                     rng)
    for split in SPLITS:
        src = 'test' if split == 'test' else 'train'
        prefix = 't10k' if split == 'test' else 'train'
        images, labels = arrays[src]
        for name in CLASS_NAMES:
            os.makedirs(osp.join(out_dir, split, class_dir(name)),
                        exist_ok=True)
        lines = []
        for i in picked[split]:
            label = int(labels[i])
            rel = (f'{split}/{class_dir(CLASS_NAMES[label])}/'
                   f'{prefix}_{i:05d}.png')
            Image.fromarray(images[i]).save(osp.join(out_dir, rel))
            lines.append(f'{rel} {label}\n')
        with open(osp.join(out_dir, LIST_NAME.format(split)), 'w') as f:
            f.writelines(lines)
    with open(osp.join(out_dir, 'labels.txt'), 'w') as f:
        f.write(''.join(f'{name}\n' for name in CLASS_NAMES))
    meta = dict(args=args, train_counts=train_counts.tolist(),
                class_order=class_order.tolist(), source=source)
    # Written last: its presence marks a complete build.
    with open(meta_file, 'w') as f:
        json.dump(meta, f, indent=2)
    return _result(out_dir, meta, built=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Build Fashion-MNIST-LT (ImageNet-LT list format).')
    parser.add_argument('out_dir', help='output folder')
    parser.add_argument('--n-max', type=int, default=500)
    parser.add_argument('--imb-factor', type=float, default=100.)
    parser.add_argument('--val-per-class', type=int, default=20)
    parser.add_argument('--test-per-class', type=int, default=100)
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--source-dir', default=None,
        help=f'folder with the official idx files (default: {DEBIAN_DIR}, '
        'else a torchvision download)')
    parser.add_argument('--download-dir', default=None,
                        help='torchvision download folder '
                        '(default: OUT_DIR/download)')
    parser.add_argument('--no-download', action='store_true',
                        help='never use the network')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    info = make_fashion_mnist_lt(
        args.out_dir, n_max=args.n_max, imb_factor=args.imb_factor,
        val_per_class=args.val_per_class,
        test_per_class=args.test_per_class, seed=args.seed,
        source_dir=args.source_dir, download_dir=args.download_dir,
        download=not args.no_download)
    state = 'built' if info['built'] else 'up to date'
    counts = ', '.join(f'{CLASS_NAMES[c]} {info["train_counts"][c]}'
                       for c in info['class_order'])
    print(f"{info['root']}: {state} from {info['source']}; train counts "
          f'{counts}')


if __name__ == '__main__':
    main()
