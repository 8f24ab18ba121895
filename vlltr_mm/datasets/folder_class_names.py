"""Class names inferred from the folders of a list file's images."""
import posixpath
from collections import defaultdict
from typing import Callable, List

import numpy as np


def infer_class_names(ann_file: str, rel_paths: List[str],
                      labels: np.ndarray, num_classes: int,
                      locate: Callable[[int], str]) -> List[str]:
    """Name each class after the folder of its first image.

    The parent folder is the name (``train/n01440764/x.JPEG`` ->
    ``'n01440764'``); where two classes share it, more folder levels are
    added to both (Places365's ``'apartment_building/outdoor'``).

    Args:
        ann_file (str): The list file, for error messages.
        rel_paths (list[str]): Image paths as listed, N of them.
        labels (np.ndarray): int64 labels of shape [N].
        num_classes (int): Number of classes C.
        locate (Callable[[int], str]): Maps a sample index to its
            ``"file:line"``.

    Returns:
        list[str]: C class names.

    Raises:
        ValueError: If a class has no image, an image is not in a class
            folder, or two classes share every folder level (the lines
            are named; pass ``classes`` instead).
    """
    present, first = np.unique(labels, return_index=True)
    if len(present) < num_classes:
        missing = np.setdiff1d(np.arange(num_classes), present)
        raise ValueError(
            f'{ann_file}: cannot infer class names: class '
            f'{missing[0]} has no image ({missing.size} classes missing); '
            'pass `classes`')
    dirs = [[part for part in posixpath.dirname(rel_paths[i]).split('/')
             if part] for i in first]
    for c, parts in enumerate(dirs):
        if not parts:
            raise ValueError(
                f'{locate(first[c])}: cannot infer the name of class {c}'
                f' from {rel_paths[first[c]]!r} (not in a class folder); '
                'pass `classes`')
    # Grow a name by one folder level only where names clash, so that
    # Places365's '<scene>/indoor' and '<scene>/outdoor' stay distinct.
    depth = [1] * num_classes
    while True:
        names = ['/'.join(p[-k:]) for p, k in zip(dirs, depth)]
        groups = defaultdict(list)
        for c, name in enumerate(names):
            groups[name].append(c)
        clashes = [g for g in groups.values() if len(g) > 1]
        if not clashes:
            return names
        grown = False
        for c in (c for group in clashes for c in group):
            if depth[c] < len(dirs[c]):
                depth[c] += 1
                grown = True
        if not grown:
            a, b = clashes[0][:2]
            raise ValueError(
                f'{locate(first[b])}: classes {a} and {b} both live in '
                f'folder {names[a]!r} (first image of class {a} at '
                f'{locate(first[a])}); cannot infer class names from '
                'folders, pass `classes` (names or a labels file)')
