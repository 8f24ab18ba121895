"""Write ImageNet-LT's ``labels.txt``: the 1,000 class names in label order.

ImageNet-LT's list files label classes by the standard ImageNet index, the
position of the class's WordNet id in sorted order (0 = n01440764 tench).
The names are CLIP's (OpenAI's hand-cleaned ImageNet names, shipped by
open_clip as ``zero_shot_metadata.IMAGENET_CLASSNAMES``, in that order),
the names CLIP's zero-shot prompts were tuned on. That list gives two
names to two classes each ("missile" 657 and 744, "sunglasses" 836 and
837); our labels reader needs unique names, so of each such pair the
class whose first WordNet lemma (MMPretrain's ``IMAGENET_CATEGORIES``,
same order) is not the shared name takes that lemma: 744 "projectile",
836 "sunglass".

With ``--list`` the tool also checks a list file against that order: one
WordNet id per label, in increasing order with the label.

Examples::

    python tools/data/imagenet_lt_labels.py
    python tools/data/imagenet_lt_labels.py \\
        --list data/imagenet/ImageNet_LT_train.txt \\
        --out data/imagenet/labels.txt --out data/text/imagenet-lt/labels.txt
"""
import argparse
import re
import sys
from typing import List, Optional

from labels_writer import add_out_argument, run_steps, write_labels

from vlltr_mm.datasets.annotation_io import read_list_annotations

NUM_CLASSES = 1000
DEFAULT_OUTS = ('data/imagenet/labels.txt', 'data/text/imagenet-lt/labels.txt')
_WNID = re.compile(r'(?:^|/)(n\d{8})(?:/|_)')


def imagenet_class_names() -> List[str]:
    """CLIP's ImageNet class names, made unique.

    Returns:
        list[str]: 1,000 names; name i is ImageNet class i.

    Raises:
        RuntimeError: If the installed open_clip / MMPretrain lists do not
            have 1,000 entries (an incompatible release).
    """
    from mmpretrain.datasets.categories import IMAGENET_CATEGORIES
    from open_clip.zero_shot_metadata import IMAGENET_CLASSNAMES
    names = [str(n) for n in IMAGENET_CLASSNAMES]
    if len(names) != NUM_CLASSES or len(IMAGENET_CATEGORIES) != NUM_CLASSES:
        raise RuntimeError(
            f'open_clip lists {len(names)} and MMPretrain '
            f'{len(IMAGENET_CATEGORIES)} ImageNet classes, expected '
            f'{NUM_CLASSES}; install the versions in requirements/')
    counts = {}
    for name in names:
        counts[name] = counts.get(name, 0) + 1
    for label, name in enumerate(names):
        lemma = IMAGENET_CATEGORIES[label].split(',')[0].strip()
        if counts[name] > 1 and lemma != name:
            names[label] = lemma
    return names


def check_list_order(list_file: str) -> str:
    """Check that a list file labels classes in sorted WordNet-id order.

    Args:
        list_file (str): An ``ImageNet_LT_*.txt`` whose paths contain the
            class's WordNet id (``train/n01440764/n01440764_190.JPEG 0``).

    Returns:
        str: A one-line summary for the user.

    Raises:
        ValueError: If a label has two WordNet ids, a WordNet id two
            labels, or the ids do not increase with the label (lines
            named).
    """
    wnid_of, line_of = {}, {}
    label_of = {}
    skipped = 0
    for path, label, line in read_list_annotations(list_file):
        match = _WNID.search(path)
        if match is None:
            skipped += 1
            continue
        wnid = match.group(1)
        if wnid_of.setdefault(label, wnid) != wnid:
            raise ValueError(
                f'{list_file}:{line}: label {label} is {wnid} here but '
                f'{wnid_of[label]} on line {line_of[label]}')
        if label_of.setdefault(wnid, label) != label:
            raise ValueError(
                f'{list_file}:{line}: {wnid} is labelled {label} here but '
                f'{label_of[wnid]} elsewhere')
        line_of.setdefault(label, line)
    labels = sorted(wnid_of)
    for low, high in zip(labels, labels[1:]):
        if wnid_of[low] >= wnid_of[high]:
            raise ValueError(
                f'{list_file}:{line_of[high]}: label {high} is '
                f'{wnid_of[high]} but label {low} is {wnid_of[low]} '
                f'(line {line_of[low]}); the labels are not in sorted '
                'WordNet-id order, so these class names would be wrong')
    if labels and labels[-1] >= NUM_CLASSES:
        raise ValueError(f'{list_file}:{line_of[labels[-1]]}: label '
                         f'{labels[-1]} >= {NUM_CLASSES}')
    note = f', {skipped} without a WordNet id skipped' if skipped else ''
    return (f'checked: {list_file} labels {len(labels)} classes in sorted '
            f'WordNet-id order{note}')


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--list', action='append', default=[], metavar='LIST_FILE',
        help='also check that this ImageNet_LT_*.txt labels classes in '
        'sorted WordNet-id order (repeatable)')
    add_out_argument(parser, DEFAULT_OUTS)
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Exit status 0 on success, 1 if a check or a write fails."""
    args = parse_args(argv)

    def steps():
        return [check_list_order(f) for f in args.list] + write_labels(
            imagenet_class_names(), args.out or args.out_defaults,
            'open_clip IMAGENET_CLASSNAMES')

    return run_steps(steps)


if __name__ == '__main__':
    sys.exit(main())
