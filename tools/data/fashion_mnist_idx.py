"""Readers of the official Fashion-MNIST idx files.

Used by ``make_fashion_mnist_lt.py``; kept apart so that each tool file
holds one job (reading the source vs. building the long-tailed split).
"""
import gzip
import os.path as osp
from typing import Dict, Optional, Tuple

import numpy as np

IDX_FILES = {
    'train': ('train-images-idx3-ubyte', 'train-labels-idx1-ubyte'),
    'test': ('t10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte'),
}

Arrays = Dict[str, Tuple[np.ndarray, np.ndarray]]


def read_idx(path: str) -> np.ndarray:
    """Read an idx file of unsigned bytes (optionally gzip-compressed).

    Args:
        path (str): ``*-idx{1,3}-ubyte`` file, or the same with ``.gz``.

    Returns:
        np.ndarray: uint8 array with the shape stored in the header.

    Raises:
        ValueError: If the header or the data size is invalid.
    """
    opener = gzip.open if path.endswith('.gz') else open
    with opener(path, 'rb') as f:
        data = f.read()
    if len(data) < 4 or data[:2] != b'\0\0' or data[2] != 0x08:
        raise ValueError(f'{path}: not an unsigned-byte idx file')
    ndim = data[3]
    header = 4 + 4 * ndim
    shape = tuple(
        int.from_bytes(data[4 + 4 * i:8 + 4 * i], 'big')
        for i in range(ndim))
    if len(data) != header + int(np.prod(shape)):
        raise ValueError(f'{path}: header promises shape {shape} but the '
                         f'file holds {len(data) - header} bytes of data')
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def idx_path(source_dir: str, stem: str) -> Optional[str]:
    for name in (stem + '.gz', stem):
        if osp.isfile(osp.join(source_dir, name)):
            return osp.join(source_dir, name)
    return None


def read_source_dir(source_dir: str) -> Arrays:
    arrays = {}
    for split, stems in IDX_FILES.items():
        paths = [idx_path(source_dir, stem) for stem in stems]
        missing = [s for s, p in zip(stems, paths) if p is None]
        if missing:
            raise FileNotFoundError(
                f'{source_dir} lacks {missing} (.gz or uncompressed)')
        images, labels = (read_idx(p) for p in paths)
        if images.shape[0] != labels.shape[0] or images.shape[1:] != (28,
                                                                     28):
            raise ValueError(f'{source_dir}: {split} images {images.shape} '
                             f'do not match labels {labels.shape}')
        arrays[split] = (images, labels)
    return arrays


def download_with_torchvision(download_dir: str) -> Arrays:
    from torchvision.datasets import FashionMNIST
    arrays = {}
    for split in IDX_FILES:
        ds = FashionMNIST(download_dir, train=split == 'train',
                          download=True)
        arrays[split] = (ds.data.numpy(), ds.targets.numpy().astype(
            np.uint8))
    return arrays
