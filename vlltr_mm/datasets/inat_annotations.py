"""Reader of the COCO-style iNaturalist 2018 annotation files.

``train2018.json`` / ``val2018.json`` and the later ``categories.json``
(paper §4.1). Every error names the JSON file and the offending entry
(``"val2018.json: annotations[3] has unknown category id 7"``).
"""
import json
from typing import List, NamedTuple, Tuple

import numpy as np

from .text_files import read_text


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
        return json.loads(read_text(json_file))
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
