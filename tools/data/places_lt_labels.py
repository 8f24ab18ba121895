"""Write Places-LT's ``labels.txt`` from Places365's category file.

``categories_places365.txt`` (in Places365's development kit) has one
``/<letter>/<scene>[/<sub-scene>] <index>`` line per class, e.g.
``/a/airfield 0`` and ``/a/apartment_building/outdoor 8``. Places-LT's list
files use these indices as labels. A readable name drops the ``/<letter>/``
prefix and turns ``_`` and ``/`` into spaces ("airfield", "apartment
building outdoor"), the rule our labels reader applies to the authors'
copy of this file, so either file gives the same class names. The indices
must be 0..364, each once.

With ``--list`` the tool also checks a list file against the categories:
every image inside a scene folder (``data_256/a/airfield/x.jpg`` or
``train/airfield/x.jpg``) must carry that scene's index; images outside
scene folders (the flat ``val_256/``) are skipped.

Examples::

    python tools/data/places_lt_labels.py \\
        data/places365/categories_places365.txt \\
        --list data/places365/Places_LT_train.txt
"""
import argparse
import re
import sys
from typing import Dict, List, Optional, Tuple

from labels_writer import add_out_argument, run_steps, write_labels

from vlltr_mm.datasets.annotation_io import read_list_annotations
from vlltr_mm.datasets.text_files import read_text

NUM_CLASSES = 365
DEFAULT_OUTS = ('data/places365/labels.txt', 'data/text/places-lt/labels.txt')
_LINE = re.compile(r'^/([a-z])/(\S+)\s+(\d+)$')


def read_categories(cat_file: str,
                    num_classes: int = NUM_CLASSES) -> List[Tuple[str, str]]:
    """Read ``categories_places365.txt``.

    Args:
        cat_file (str): The category file.
        num_classes (int): Expected number of classes. Defaults to 365.

    Returns:
        list[tuple[str, str]]: Per index, the category path without its
        leading slash (``'a/apartment_building/outdoor'``) and the readable
        name (``'apartment building outdoor'``).

    Raises:
        ValueError: For a line that is not ``/x/scene index``, a repeated
            index or path, or indices other than ``0..num_classes-1``
            (file and line named).
    """
    by_index: Dict[int, Tuple[str, str, int]] = {}
    line_of_path: Dict[str, int] = {}
    for lineno, line in enumerate(read_text(cat_file).split('\n'), 1):
        line = line.strip()
        if not line:
            continue
        match = _LINE.match(line)
        if match is None:
            raise ValueError(f'{cat_file}:{lineno}: expected "/x/scene '
                             f'index" (e.g. "/a/airfield 0"), got {line!r}')
        letter, scene, index = match.group(1), match.group(2), int(
            match.group(3))
        path = f'{letter}/{scene}'
        if index in by_index:
            raise ValueError(f'{cat_file}:{lineno}: index {index} repeats '
                             f'line {by_index[index][2]}')
        if path in line_of_path:
            raise ValueError(f'{cat_file}:{lineno}: /{path} repeats line '
                             f'{line_of_path[path]}')
        name = scene.replace('_', ' ').replace('/', ' ')
        by_index[index] = (path, name, lineno)
        line_of_path[path] = lineno
    if sorted(by_index) != list(range(num_classes)):
        missing = sorted(set(range(num_classes)) - set(by_index))[:5]
        extra = sorted(set(by_index) - set(range(num_classes)))[:5]
        raise ValueError(
            f'{cat_file}: has {len(by_index)} categories; expected indices '
            f'0..{num_classes - 1} each once (missing: {missing}, out of '
            f'range: {extra})')
    return [by_index[i][:2] for i in range(num_classes)]


def check_list_labels(list_file: str, paths: List[str]) -> str:
    """Check a list file's labels against the scene folders of its images.

    Args:
        list_file (str): A ``Places_LT_*.txt``.
        paths (list[str]): Category paths by index, as returned by
            :func:`read_categories`.

    Returns:
        str: A one-line summary for the user.

    Raises:
        ValueError: At the first image whose scene folder has another
            index than its label (line named).
    """
    # Scene folders with the letter (data_256/a/airfield) or without
    # (places365_standard's train/airfield); the longest match wins.
    index_of = {}
    for index, path in enumerate(paths):
        index_of[path] = index
        index_of[path.split('/', 1)[1]] = index
    checked = skipped = 0
    for image, label, line in read_list_annotations(list_file):
        parts = image.strip('/').split('/')[:-1]
        index = next((index_of[key] for key in (
            '/'.join(parts[-n:]) for n in (3, 2, 1) if len(parts) >= n)
            if key in index_of), None)
        if index is None:
            skipped += 1
        elif index != label:
            raise ValueError(
                f'{list_file}:{line}: {image} lies in the folder of class '
                f'{index} (/{paths[index]}) but is labelled {label}; the '
                'list and the category file disagree')
        else:
            checked += 1
    note = f', {skipped} outside scene folders skipped' if skipped else ''
    return (f'checked: {list_file}: {checked} labels match their scene '
            f'folders{note}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('categories',
                        help='categories_places365.txt of Places365')
    parser.add_argument(
        '--list', action='append', default=[], metavar='LIST_FILE',
        help='also check the labels of this Places_LT_*.txt against its '
        'scene folders (repeatable)')
    add_out_argument(parser, DEFAULT_OUTS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Exit status 0 on success, 1 if reading, a check or a write fails."""
    args = parse_args(argv)

    def steps():
        categories = read_categories(args.categories)
        paths = [path for path, _ in categories]
        return [check_list_labels(f, paths) for f in args.list
                ] + write_labels([name for _, name in categories],
                                 args.out or args.out_defaults,
                                 args.categories)

    return run_steps(steps)


if __name__ == '__main__':
    sys.exit(main())
