"""Readers for the annotation files of the long-tailed benchmarks.

Two formats are covered (paper §4.1):

* list files of ImageNet-LT and Places-LT (``ImageNet_LT_train.txt``,
  ``Places_LT_test.txt``, ...): one ``relative/path label`` per line;
* the COCO-style JSON files of iNaturalist 2018 (``train2018.json``,
  ``val2018.json``).

Every reader fails with a :class:`ValueError` whose message starts with the
file name and, for list files, the 1-based line number
(``"ImageNet_LT_train.txt:17: label 'x' is not an integer"``), so that a
broken line in a 100k-line file can be found at once.
"""
import json
import re
from typing import Callable, List, NamedTuple, Optional, Tuple

import numpy as np
from mmengine.fileio import get_text

# ASCII digits only: ``int()`` would also take '1_000' or non-ASCII digits.
_INT_RE = re.compile(r'[+-]?[0-9]+')


def read_list_annotations(ann_file: str) -> List[Tuple[str, int, int]]:
    """Read an ImageNet-LT / Places-LT style list file.

    Each non-blank line is ``relative/path label``. The line is split on its
    last run of whitespace, so paths may contain spaces. Blank lines are
    skipped but still counted for line numbers.

    Args:
        ann_file (str): Path of the list file.

    Returns:
        list[tuple[str, int, int]]: ``(relative_path, label, line_number)``
        per annotation, in file order; line numbers are 1-based.

    Raises:
        ValueError: For a line without label, a non-integer or negative
            label, or a file without any annotation. The message starts
            with ``"<ann_file>:<line>:"``.
    """
    records = []
    for lineno, line in enumerate(get_text(ann_file).split('\n'), 1):
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
        records.append((path, label, lineno))
    if not records:
        raise ValueError(f'{ann_file}: no annotations found')
    return records


def read_class_names(labels_file: str) -> List[str]:
    """Read class names, one per line (blank lines skipped, ends stripped).

    Args:
        labels_file (str): Path of the labels file, e.g. ``labels.txt``.

    Returns:
        list[str]: Class names; the i-th name is class i.

    Raises:
        ValueError: If the file has no name or repeats a name (the message
            names the file and the line of the repetition).
    """
    names, first_line = [], {}
    for lineno, line in enumerate(get_text(labels_file).split('\n'), 1):
        name = line.strip()
        if not name:
            continue
        if name in first_line:
            raise ValueError(
                f'{labels_file}:{lineno}: class name {name!r} repeats line '
                f'{first_line[name]}')
        first_line[name] = lineno
        names.append(name)
    if not names:
        raise ValueError(f'{labels_file}: no class names found')
    return names


class INatAnnotations(NamedTuple):
    """Parsed iNaturalist annotation file.

    Attributes:
        file_names (list[str]): Image paths relative to the data root, in
            the order of the JSON ``images`` list.
        labels (np.ndarray): Contiguous labels, int64 of shape [N].
        class_names (list[str]): Category names ordered by category id, so
            that ``class_names[labels[i]]`` names image i.
        category_ids (np.ndarray): Sorted original category ids, int64 of
            shape [C]; label c stands for ``category_ids[c]``.
    """
    file_names: List[str]
    labels: np.ndarray
    class_names: List[str]
    category_ids: np.ndarray


def _column(json_file: str, section: str, items: list, key: str) -> list:
    """Collect ``item[key]`` of every item, naming the first bad item."""
    try:
        return [item[key] for item in items]
    except (KeyError, TypeError):
        bad = next(i for i, item in enumerate(items)
                   if not isinstance(item, dict) or key not in item)
        raise ValueError(f"{json_file}: {section}[{bad}] has no '{key}'"
                         ) from None


def _int_ids(json_file: str, section: str, key: str,
             values: list) -> np.ndarray:
    """Convert ids to int64, naming the first non-integer one."""
    for i, value in enumerate(values):
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"{json_file}: {section}[{i}]['{key}'] = "
                             f'{value!r} is not an integer')
    return np.asarray(values, dtype=np.int64).reshape(-1)


def _first_duplicate(json_file: str, section: str, ids: np.ndarray):
    """Raise if ``ids`` holds a repeated value."""
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = uniq[counts > 1][0]
        where = np.flatnonzero(ids == dup)[:2]
        raise ValueError(f'{json_file}: {section}[{where[0]}] and '
                         f'{section}[{where[1]}] share id {dup}')


def _sorted_categories(json_file: str,
                       cats: list) -> Tuple[np.ndarray, List[str]]:
    """Category ids in increasing order and the matching names."""
    cat_ids = _int_ids(json_file, 'categories', 'id',
                       _column(json_file, 'categories', cats, 'id'))
    cat_names = _column(json_file, 'categories', cats, 'name')
    _first_duplicate(json_file, 'categories', cat_ids)
    order = np.argsort(cat_ids, kind='stable')
    return cat_ids[order], [str(cat_names[i]) for i in order]


def read_inat_categories(json_file: str) -> List[str]:
    """Read category names from an iNaturalist categories file.

    The 2018 annotation files shipped obfuscated names; the real ones came
    later as ``categories.json`` (a list of ``{"id", "name", ...}``). An
    annotation file (an object with a ``categories`` list) works as well.

    Args:
        json_file (str): Path of the JSON file.

    Returns:
        list[str]: Names ordered by category id, i.e. by contiguous label.

    Raises:
        ValueError: On invalid JSON, a category without ``id`` or ``name``,
            or a duplicated id.
    """
    data = _load_json(json_file)
    cats = data.get('categories') if isinstance(data, dict) else data
    if not isinstance(cats, list) or not cats:
        raise ValueError(f'{json_file}: expected a non-empty list of '
                         'categories (or an object with one)')
    return _sorted_categories(json_file, cats)[1]


def _load_json(json_file: str):
    try:
        return json.loads(get_text(json_file))
    except json.JSONDecodeError as err:
        raise ValueError(f'{json_file}:{err.lineno}: invalid JSON '
                         f'({err.msg})') from None


def read_inat_annotations(json_file: str) -> INatAnnotations:
    """Read an iNaturalist 2018 ``train2018.json`` / ``val2018.json``.

    The file is COCO-style: ``images`` (``id``, ``file_name``),
    ``annotations`` (``image_id``, ``category_id``) and ``categories``
    (``id``, ``name``). Category ids are mapped to contiguous labels in
    increasing id order. Each image must have exactly one annotation.

    Args:
        json_file (str): Path of the JSON file.

    Returns:
        INatAnnotations: File names, labels, class names and category ids.

    Raises:
        ValueError: On invalid JSON (file and line named), a missing key, a
            duplicated id, an annotation of an unknown image or category, or
            an image with no or several annotations.
    """
    data = _load_json(json_file)
    if not isinstance(data, dict):
        raise ValueError(f'{json_file}: expected a JSON object with keys '
                         "'images', 'annotations', 'categories'")
    for key in ('images', 'annotations', 'categories'):
        if not isinstance(data.get(key), list):
            raise ValueError(f"{json_file}: missing top-level list '{key}'")
    images, anns, cats = (data['images'], data['annotations'],
                          data['categories'])
    for key in ('images', 'categories'):
        if not data[key]:
            raise ValueError(f"{json_file}: '{key}' is empty")

    image_ids = _int_ids(json_file, 'images', 'id',
                         _column(json_file, 'images', images, 'id'))
    file_names = _column(json_file, 'images', images, 'file_name')
    ann_image_ids = _int_ids(
        json_file, 'annotations', 'image_id',
        _column(json_file, 'annotations', anns, 'image_id'))
    ann_cat_ids = _int_ids(
        json_file, 'annotations', 'category_id',
        _column(json_file, 'annotations', anns, 'category_id'))
    sorted_cat_ids, class_names = _sorted_categories(json_file, cats)
    _first_duplicate(json_file, 'images', image_ids)

    # Map annotation -> image position and category -> contiguous label with
    # sorted-id lookups instead of per-annotation dictionary probes.
    img_order = np.argsort(image_ids, kind='stable')
    pos = np.searchsorted(image_ids[img_order], ann_image_ids)
    pos = np.minimum(pos, len(image_ids) - 1)
    unknown = np.flatnonzero(image_ids[img_order][pos] != ann_image_ids)
    if unknown.size:
        k = unknown[0]
        raise ValueError(f'{json_file}: annotations[{k}] refers to unknown '
                         f'image id {ann_image_ids[k]}')
    ann_img = img_order[pos]

    cpos = np.minimum(
        np.searchsorted(sorted_cat_ids, ann_cat_ids), len(class_names) - 1)
    unknown = np.flatnonzero(sorted_cat_ids[cpos] != ann_cat_ids)
    if unknown.size:
        k = unknown[0]
        raise ValueError(f'{json_file}: annotations[{k}] has unknown '
                         f'category id {ann_cat_ids[k]}')

    per_image = np.bincount(ann_img, minlength=len(image_ids))
    for bad, what in ((per_image == 0, 'no annotation'),
                      (per_image > 1, 'several annotations')):
        if bad.any():
            i = np.flatnonzero(bad)[0]
            raise ValueError(
                f'{json_file}: images[{i}] (id {image_ids[i]}, '
                f'{file_names[i]!r}) has {what}')

    labels = np.empty(len(image_ids), dtype=np.int64)
    labels[ann_img] = cpos
    return INatAnnotations(
        file_names=[str(name) for name in file_names],
        labels=labels,
        class_names=class_names,
        category_ids=sorted_cat_ids)


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
                            num_classes: Optional[int] = None) -> np.ndarray:
    """Count the images of every class in an annotation file.

    The format is chosen by extension: ``.json`` is read as iNaturalist
    JSON, anything else as a list file.

    Args:
        ann_file (str): List file or iNaturalist JSON file.
        num_classes (int, optional): Number of classes C. Defaults to None:
            the number of categories for JSON, ``max(label) + 1`` for lists.

    Returns:
        np.ndarray: Image count per class, int64 of shape [C].

    Raises:
        ValueError: If a label is ``>= num_classes`` (location named), or
            the file itself is malformed.
    """
    if str(ann_file).lower().endswith('.json'):
        ann = read_inat_annotations(ann_file)
        labels = ann.labels
        default_c = len(ann.class_names)

        def locate(i):
            return f'{ann_file}: images[{i}] ({ann.file_names[i]!r})'
    else:
        records = read_list_annotations(ann_file)
        labels = np.fromiter((r[1] for r in records), np.int64, len(records))
        default_c = int(labels.max()) + 1

        def locate(i):
            return f'{ann_file}:{records[i][2]}'
    if num_classes is None:
        num_classes = default_c
    elif num_classes <= 0:
        raise ValueError(f'num_classes must be positive, got {num_classes}')
    check_label_range(labels, num_classes, locate)
    return np.bincount(labels, minlength=num_classes).astype(np.int64)
