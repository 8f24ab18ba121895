"""Write iNaturalist 2018's class-text ``labels.txt`` from ``categories.json``.

The 2018 annotation files (``train2018.json``, ``val2018.json``) carry
obfuscated category names; the real ones came later in ``categories.json``
(``[{"id": 0, "name": "Xanthoria parietina", "kingdom": "Fungi",
"phylum": ..., "class": ..., "order": ..., "family": ..., "genus": ...},
...]``). The dataset reads that file itself (``classes='categories.json'``)
and labels the categories in increasing id order; the class text needs the
same names in the same order as a plain ``labels.txt`` (one per line), which
this tool writes.

Names must be unique. Should two species share a name, each gets the
broadest taxonomic rank that tells them apart appended, e.g.
``"Aotus (Plantae)"`` and ``"Aotus (Animalia)"``; the tool says which.

With ``--ann`` it checks that an annotation file uses exactly the
categories' ids, so that label i means the same species in the images and
in the text. It warns if ``categories.json`` does not list its ids in
increasing order: the authors' ``wiki/desc_{i}.txt`` follow the file's
order, ours the id order.

Examples::

    python tools/data/inat2018_labels.py data/inat2018/categories.json \\
        --ann data/inat2018/train2018.json --ann data/inat2018/val2018.json
"""
import argparse
import json
import sys
from typing import List, Optional, Tuple

import numpy as np
from labels_writer import add_out_argument, run_steps, write_labels

from vlltr_mm.datasets.annotation_io import (
    read_inat_annotations,
    read_inat_categories,
)
from vlltr_mm.datasets.text_files import read_text

DEFAULT_OUTS = ('data/text/inat2018/labels.txt', )
#: Ranks tried, broadest first, to tell apart species sharing a name.
RANKS = ('kingdom', 'phylum', 'class', 'order', 'family', 'genus')


def inat_class_names(cat_file: str) -> Tuple[List[str], np.ndarray,
                                             List[str]]:
    """Unique class names of ``categories.json`` in label (id) order.

    Args:
        cat_file (str): ``categories.json`` (or an annotation file, whose
            ``categories`` are used).

    Returns:
        tuple: ``names`` (list[str], one per label), ``ids`` (np.ndarray,
        int64 [C], sorted category ids) and ``notes`` (list[str], what was
        renamed or is unusual, for the user).

    Raises:
        ValueError: For invalid JSON, a category without ``id`` or
            ``name``, a repeated id (see
            :func:`~vlltr_mm.datasets.annotation_io.read_inat_categories`),
            or two categories no rank tells apart.
    """
    names = read_inat_categories(cat_file)  # validates ids and names
    data = json.loads(read_text(cat_file))
    cats = data['categories'] if isinstance(data, dict) else data
    file_ids = np.array([c['id'] for c in cats], dtype=np.int64)
    order = np.argsort(file_ids, kind='stable')
    cats = [cats[i] for i in order]
    notes = []
    if (order != np.arange(len(order))).any():
        notes.append(
            f'warning: {cat_file} does not list its ids in increasing '
            'order; labels.txt follows the id order (the dataset\'s labels),'
            " so the authors' wiki/desc_{i}.txt (file order) do not match it")
    groups = {}
    for label, name in enumerate(names):
        groups.setdefault(name, []).append(label)
    for name, labels in groups.items():
        if len(labels) == 1:
            continue
        rank = next((r for r in RANKS if all(
            cats[i].get(r) for i in labels) and len({
                str(cats[i][r]) for i in labels}) == len(labels)), None)
        if rank is None:
            raise ValueError(
                f'{cat_file}: ids {[int(file_ids[order[i]]) for i in labels]}'
                f' are all named {name!r} and no rank of {RANKS} tells them '
                'apart; rename them in a copy of the file')
        for i in labels:
            names[i] = f'{name} ({cats[i].get(rank)})'
        notes.append(f'renamed: {len(labels)} categories named {name!r} '
                     f'now carry their {rank}: '
                     + ', '.join(repr(names[i]) for i in labels))
    return names, file_ids[order], notes


def check_annotation_ids(ann_file: str, ids: np.ndarray) -> str:
    """Check that an annotation file uses exactly the categories' ids.

    Args:
        ann_file (str): ``train2018.json`` or ``val2018.json``.
        ids (np.ndarray): Sorted ids of ``categories.json``, int64 [C].

    Returns:
        str: A one-line summary for the user.

    Raises:
        ValueError: Naming a few ids found in only one of the two files.
    """
    ann_ids = read_inat_annotations(ann_file).category_ids
    if not np.array_equal(ann_ids, ids):
        only_ann = np.setdiff1d(ann_ids, ids)[:5].tolist()
        only_cat = np.setdiff1d(ids, ann_ids)[:5].tolist()
        raise ValueError(
            f'{ann_file}: its {ann_ids.size} category ids differ from the '
            f'{ids.size} of the categories file (only here: {only_ann}; only '
            f'there: {only_cat}); use the files of one release')
    return f'checked: {ann_file} uses the same {ids.size} category ids'


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('categories', help='categories.json of iNat 2018')
    parser.add_argument(
        '--ann', action='append', default=[], metavar='JSON',
        help='also check that this annotation file (train2018.json, '
        'val2018.json) uses the same category ids (repeatable)')
    add_out_argument(parser, DEFAULT_OUTS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Exit status 0 on success, 1 if reading, a check or a write fails."""
    args = parse_args(argv)

    def steps():
        names, ids, notes = inat_class_names(args.categories)
        return notes + [check_annotation_ids(f, ids) for f in args.ann
                        ] + write_labels(names, args.out or args.out_defaults,
                                         args.categories)

    return run_steps(steps)


if __name__ == '__main__':
    sys.exit(main())
