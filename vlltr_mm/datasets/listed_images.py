"""Checks of the image paths an annotation file lists.

Done once when the annotation is read, so that a wrong list fails with
its lines named instead of skewing a run: every listed image must exist,
and an image must be listed once. An image listed again counts several
times in the class counts that the class-balanced samplers and
``LongTailAccuracy`` read (3 images listed three times are 9 for both);
an image listed with two labels has no single class.
"""
import os.path as osp
from typing import Callable, Sequence

import numpy as np

#: What to do about a repeat that is meant, in the dataset's words.
DATASET_REPEAT_HINT = ('set allow_duplicates=True on the dataset to repeat '
                       'images on purpose')


def check_files_exist(paths: Sequence[str],
                      locate: Callable[[int], str]) -> None:
    """Raise if a listed image is not a file on the local file system.

    Args:
        paths (Sequence[str]): Image paths as they will be loaded, N.
        locate (Callable[[int], str]): Maps an index to where image i is
            listed, e.g. ``"train.txt:3"``.

    Raises:
        FileNotFoundError: Naming the first missing image and how many
            are missing.
    """
    exists = np.fromiter(map(osp.exists, paths), bool, len(paths))
    if not exists.all():
        missing = np.flatnonzero(~exists)
        i = int(missing[0])
        raise FileNotFoundError(
            f'{locate(i)}: image file {paths[i]!r} does not exist '
            f'({missing.size} of {len(paths)} listed images are missing; '
            'check data_root / data_prefix, or set check_files=False)')


def first_listing(paths: Sequence[str]) -> np.ndarray:
    """Index of the first listing of each image.

    Paths are compared after :func:`os.path.normpath` (``a/./x.png`` is
    ``a/x.png``).

    Args:
        paths (Sequence[str]): Image paths, N.

    Returns:
        np.ndarray: int64 of shape [N]; ``first[i] == i`` unless image i
        was already listed at ``first[i] < i``.
    """
    seen = {}
    return np.fromiter(
        (seen.setdefault(path, i)
         for i, path in enumerate(map(osp.normpath, paths))), np.int64,
        len(paths))


def check_duplicate_images(paths: Sequence[str],
                           labels: np.ndarray,
                           locate: Callable[[int], str],
                           allow_repeats: bool = False,
                           repeat_hint: str = DATASET_REPEAT_HINT
                           ) -> np.ndarray:
    """Refuse an image listed with two labels, or listed again.

    Args:
        paths (Sequence[str]): Image paths as listed, N.
        labels (np.ndarray): Their labels, int of shape [N].
        locate (Callable[[int], str]): Maps an index to where image i is
            listed, e.g. ``"train.txt:3"``.
        allow_repeats (bool): Accept an image listed again with the same
            label (deliberate oversampling). Defaults to False.
        repeat_hint (str): How to allow repeats, for the error message.
            Defaults to :data:`DATASET_REPEAT_HINT`.

    Returns:
        np.ndarray: bool of shape [N], True at the first listing of each
        image (all True for a list without repeats).

    Raises:
        ValueError: Naming both lines of the first image listed with two
            labels, or (unless ``allow_repeats``) listed again.
    """
    labels = np.asarray(labels)
    first = first_listing(paths)
    repeat = np.flatnonzero(first != np.arange(len(first)))
    if repeat.size == 0:
        return np.ones(len(first), dtype=bool)
    conflict = repeat[labels[repeat] != labels[first[repeat]]]
    if conflict.size:
        i = int(conflict[0])
        j = int(first[i])
        raise ValueError(
            f'{locate(i)}: image {paths[i]!r} is listed with label '
            f'{labels[i]}, but {locate(j)} lists it with label {labels[j]}; '
            'an image has one class: fix or remove one of the two lines '
            f'({conflict.size} line(s) give an image a second label)')
    if not allow_repeats:
        i = int(repeat[0])
        raise ValueError(
            f'{locate(i)}: image {paths[i]!r} is listed again (first at '
            f'{locate(int(first[i]))}); {repeat.size} line(s) repeat an '
            'earlier image, which counts it several times in the class '
            'counts of the samplers and the metric. Remove the repeated '
            f'lines, or {repeat_hint}.')
    keep = np.ones(len(first), dtype=bool)
    keep[repeat] = False
    return keep
