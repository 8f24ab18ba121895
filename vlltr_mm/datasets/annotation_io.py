"""Readers for the list and labels files of the long-tailed benchmarks.

* list files of ImageNet-LT and Places-LT (``ImageNet_LT_train.txt``,
  ``Places_LT_test.txt``, ...): one ``relative/path label`` per line;
* labels files (one class name per line, or the authors' indexed layouts),
  the one reader of class names for the datasets and the text corpus.

The COCO-style iNaturalist JSON files are read by :mod:`.inat_annotations`
(re-exported here). Every reader fails with an error whose message starts
with the file name and, for text files, the 1-based line number
(``"ImageNet_LT_train.txt:17: label 'x' is not an integer"``), so that a
broken line in a 100k-line file can be found at once. A UTF-8 byte-order
mark is dropped; a file in another encoding is refused with its line.
"""
import os.path as osp
import re
from typing import Callable, List, Optional, Sequence, Tuple, Union

import numpy as np
from mmengine.fileio import join_path

from .inat_annotations import (  # noqa: F401 (re-exported)
    INatAnnotations,
    read_inat_annotations,
    read_inat_categories,
)
from .listed_images import check_duplicate_images
from .text_files import read_text

# ASCII digits only: ``int()`` would also take '1_000' or non-ASCII digits.
_INT_RE = re.compile(r'[+-]?[0-9]+')
# Labels are stored as int64; a longer number is a broken line, not a class.
_MAX_LABEL = np.iinfo(np.int64).max
# The authors' labels files: ImageNet-LT ``n01440764 0 tench`` and
# Places-LT ``/a/airfield 0``.
_IMAGENET_LABEL = re.compile(r'^n\d{8}\s+(\d+)\s+(\S+)$')
_PLACES_LABEL = re.compile(r'^(/\S+)\s+(\d+)$')


def read_list_annotations(ann_file: str) -> List[Tuple[str, int, int]]:
    """Read an ImageNet-LT / Places-LT style list file.

    Each non-blank line is ``relative/path label``. The line is split on its
    last run of whitespace, so paths may contain spaces. Blank lines are
    skipped but still counted for line numbers.

    Args:
        ann_file (str): Path of the list file (UTF-8, BOM allowed).

    Returns:
        list[tuple[str, int, int]]: ``(relative_path, label, line_number)``
        per annotation, in file order; line numbers are 1-based.

    Raises:
        ValueError: For a line without label, a non-integer, negative or
            too large label, or a file without any annotation. The message
            starts with ``"<ann_file>:<line>:"``.
        UnicodeError: If the file is not UTF-8 (file and line named).
    """
    records = []
    for lineno, line in enumerate(read_text(ann_file).split('\n'), 1):
        line = line.strip()
        if not line:
            continue
        parts = line.rsplit(None, 1)
        if len(parts) < 2:
            raise ValueError(
                f'{ann_file}:{lineno}: missing label in {line!r}; expected '
                '"relative/path label"')
        path, label_str = parts
        if not _INT_RE.fullmatch(label_str):
            raise ValueError(f'{ann_file}:{lineno}: label {label_str!r} is '
                             'not an integer')
        label = int(label_str)
        if label < 0:
            raise ValueError(
                f'{ann_file}:{lineno}: label {label} is negative')
        if label > _MAX_LABEL:
            raise ValueError(
                f'{ann_file}:{lineno}: label {label_str} is too large for a '
                'class index; fix the line ("relative/path label")')
        records.append((path, label, lineno))
    if not records:
        raise ValueError(f'{ann_file}: no annotations found')
    return records


def _indexed_names(labels_file: str, lines: List[Tuple[int, str]]
                   ) -> Optional[List[Tuple[int, str]]]:
    """``(line, name)`` in index order if every line is an authors' layout.

    ImageNet-LT names lose their underscores; Places-LT paths lose the
    leading ``/a/`` and keep sub-scenes (``apartment building outdoor``).
    """
    imagenet = [_IMAGENET_LABEL.match(text) for _, text in lines]
    if all(imagenet):
        pairs = [(int(m.group(1)), m.group(2)) for m in imagenet]
    else:
        places = [_PLACES_LABEL.match(text) for _, text in lines]
        if not all(places):
            return None
        pairs = [(int(m.group(2)), m.group(1).split('/', 2)[-1])
                 for m in places]
    order = sorted(range(len(pairs)), key=lambda k: pairs[k][0])
    if [pairs[k][0] for k in order] != list(range(len(pairs))):
        raise ValueError(f'{labels_file}: indices are not '
                         f'0..{len(pairs) - 1} without gaps or repeats')
    return [(lines[k][0], pairs[k][1].replace('_', ' ').replace('/', ' '))
            for k in order]


def read_class_names(labels_file: str) -> List[str]:
    """Read class names, in label order, from a labels file.

    One class name per line (blank lines skipped, ends stripped). The
    authors' two layouts are recognised too: ImageNet-LT
    ``n01440764 0 tench`` (WordNet id, index, name with underscores) and
    Places-LT ``/a/airfield 0`` (path-like name, index); both are ordered
    by their index column and underscores become spaces.

    Args:
        labels_file (str): Path of the labels file, e.g. ``labels.txt``
            (UTF-8, BOM allowed).

    Returns:
        list[str]: Class names; the i-th name is class i.

    Raises:
        ValueError: If the file has no name, an authors' layout has gaps in
            its indices, or a name repeats (both lines named).
        UnicodeError: If the file is not UTF-8 (file and line named).
    """
    return parse_class_names(read_text(labels_file), labels_file)


def parse_class_names(text: str, source: str) -> List[str]:
    """:func:`read_class_names` of a labels file's text; ``source`` names
    it in messages."""
    lines = [(lineno, line.strip())
             for lineno, line in enumerate(text.split('\n'), 1)
             if line.strip()]
    if not lines:
        raise ValueError(f'{source}: no class names found')
    named = _indexed_names(source, lines) or lines
    first_line = {}
    for lineno, name in named:
        if name in first_line:
            raise ValueError(
                f'{source}:{lineno}: class name {name!r} repeats line '
                f'{first_line[name]}; class names must be unique (rename '
                'one, e.g. "crane (bird)")')
        first_line[name] = lineno
    return [name for _, name in named]


def read_classes_argument(classes: Union[str, Sequence[str], None],
                          data_root: str = ''
                          ) -> Tuple[Optional[List[str]], Optional[str]]:
    """Resolve a dataset's ``classes`` argument to names and their source.

    Args:
        classes (str | Sequence[str], optional): Class names, or a labels
            file (see :func:`read_class_names`), or a ``.json`` list of
            ``{"id", "name"}`` categories. A relative path is relative to
            ``data_root``.
        data_root (str): Root of a relative path. Defaults to ''.

    Returns:
        tuple: The names (None for None) and where they come from, for
        messages: the file's path, ``'classes'`` for a given list, or None.

    Raises:
        ValueError: If a name repeats.
    """
    if classes is None:
        return None, None
    if not isinstance(classes, str):
        names = [str(name) for name in classes]
        if len(set(names)) != len(names):
            raise ValueError('classes contains repeated names')
        return names, 'classes'
    path = osp.expanduser(classes)
    if data_root and not osp.isabs(path):
        path = join_path(data_root, path)
    return (read_inat_categories(path) if path.lower().endswith('.json')
            else read_class_names(path)), path


def check_label_range(labels: np.ndarray, num_classes: int,
                      locate: Callable[[int], str]) -> None:
    """Raise if any label is ``>= num_classes``.

    Args:
        labels (np.ndarray): Labels, int of shape [N].
        num_classes (int): Number of classes C.
        locate (Callable[[int], str]): Maps an index into ``labels`` to where
            that label comes from, e.g. ``"train.txt:3"``.

    Raises:
        ValueError: Naming the location of the first offending label.
    """
    bad = np.flatnonzero(np.asarray(labels) >= num_classes)
    if bad.size:
        i = int(bad[0])
        raise ValueError(f'{locate(i)}: label {labels[i]} >= num_classes '
                         f'({num_classes}); {bad.size} label(s) out of range')


def count_classes_from_file(ann_file: str,
                            num_classes: Optional[int] = None,
                            allow_duplicates: bool = False) -> np.ndarray:
    """Count the distinct images of every class in an annotation file.

    The format is chosen by extension: ``.json`` is read as iNaturalist
    JSON, anything else as a list file. An image listed twice is refused
    as by the datasets (see
    :func:`~vlltr_mm.datasets.listed_images.check_duplicate_images`).

    Args:
        ann_file (str): List file or iNaturalist JSON file.
        num_classes (int, optional): Number of classes C. Defaults to None:
            the number of categories for JSON, ``max(label) + 1`` for lists.
        allow_duplicates (bool): Accept an image listed again with the same
            label and count it once. Defaults to False.

    Returns:
        np.ndarray: Image count per class, int64 of shape [C].

    Raises:
        ValueError: If a label is ``>= num_classes``, an image is listed
            with two labels, or (unless ``allow_duplicates``) listed again
            (locations named), or the file itself is malformed.
    """
    if str(ann_file).lower().endswith('.json'):
        ann = read_inat_annotations(ann_file)
        labels, paths = ann.labels, ann.file_names
        default_c = len(ann.class_names)

        def locate(i):
            return f'{ann_file}: images[{i}] ({ann.file_names[i]!r})'
    else:
        records = read_list_annotations(ann_file)
        labels = np.fromiter((r[1] for r in records), np.int64, len(records))
        paths = [r[0] for r in records]
        default_c = int(labels.max()) + 1

        def locate(i):
            return f'{ann_file}:{records[i][2]}'
    if num_classes is None:
        num_classes = default_c
    elif num_classes <= 0:
        raise ValueError(f'num_classes must be positive, got {num_classes}')
    check_label_range(labels, num_classes, locate)
    first = check_duplicate_images(
        paths, labels, locate, allow_duplicates,
        'count each image once with count_classes_from_file(..., '
        'allow_duplicates=True) and give LongTailAccuracy those '
        'class_counts instead of train_ann_file')
    return np.bincount(labels[first],
                       minlength=num_classes).astype(np.int64)
