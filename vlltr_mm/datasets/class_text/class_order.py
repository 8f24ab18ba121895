"""A corpus must name the classes of the dataset it meets, in its order.

Sentences are tied to classes by position: the corpus's class i teaches
(CVLP, Eq. 2) and anchors (AnSS, LGR) the dataset's label i. Two lists
that hold the same names in another order train and score the wrong
class silently (two swapped names cost 16 points of top-1 on the demo),
so a name found at another position is an error. Names that differ only
in spelling (case, ``_`` for space) are the same name; names that match
nowhere (WordNet ids against English names) are warned about, since two
naming schemes cannot be compared.
"""
import warnings
from typing import Optional, Sequence

#: Moved or differing classes shown in a message.
_SHOWN = 5


def _norm(name: str) -> str:
    return ' '.join(str(name).replace('_', ' ').lower().split())


def check_class_order(expected: Sequence[str], expected_source: str,
                      got: Sequence[str], got_source: str,
                      expected_file: Optional[str] = None) -> None:
    """Raise unless ``got`` names the classes of ``expected`` in order.

    Args:
        expected (Sequence[str]): The dataset's class names, in label
            order (C of them).
        expected_source (str): Where they come from (a labels file, an
            argument), for messages, e.g. ``'the dataset
            (data/imagenet/labels.txt)'``.
        got (Sequence[str]): The corpus's class names, in its order.
        got_source (str): Where they come from, for messages.
        expected_file (str, optional): The labels file of ``expected``, to
            rebuild the corpus from. Defaults to None.

    Raises:
        ValueError: If the counts differ, or a name of one list is at
            another position in the other (both positions named).

    Warns:
        UserWarning: Listing the positions where the two names differ
            and neither name is elsewhere in the other list.
    """
    if len(got) != len(expected):
        raise ValueError(
            f'{got_source} has {len(got)} classes but {expected_source} has '
            f'{len(expected)}; both must list the same classes in the same '
            'order (one name per line in a labels file)')
    want = {_norm(n): i for i, n in enumerate(expected)}
    have = [_norm(n) for n in got]
    moved = [(name, i, want[key]) for i, (name, key) in enumerate(
        zip(got, have)) if want.get(key, i) != i]
    if moved:
        shown = ', '.join(f'{name!r} is class {i} in {got_source} but '
                          f'class {j} in {expected_source}'
                          for name, i, j in moved[:_SHOWN])
        raise ValueError(
            f'{got_source} and {expected_source} order the classes '
            f'differently: {shown} ({len(moved)} of {len(got)} classes at '
            'another position). Class i of the corpus is label i of the '
            'data, so its sentences would describe another class. '
            + _order_fix(expected_file))
    differ = [(i, a, b) for i, (a, b, key) in enumerate(
        zip(expected, got, have)) if key != _norm(a)]
    if differ:
        shown = ', '.join(f'class {i} is {a!r} in {expected_source} but '
                          f'{b!r} in {got_source}'
                          for i, a, b in differ[:_SHOWN])
        warnings.warn(
            f'{len(differ)} of {len(got)} class names differ between '
            f'{expected_source} and {got_source} ({shown}); check that '
            'both lists name the same classes in the same order.')


def _order_fix(labels_file: Optional[str]) -> str:
    """What to do about a corpus in another order."""
    if labels_file:
        rebuild = ("rebuild its text for the data's class list (python "
                   'tools/text/build_class_text.py OUT_DIR --labels-file '
                   f'{labels_file}) and point the corpus at OUT_DIR')
    else:
        rebuild = ("rebuild its text for the data's class list "
                   '(tools/text/build_class_text.py)')
    return (f'Make the corpus follow the data: {rebuild}, or reorder its '
            "labels file together with its wiki/desc_{i}.txt files; text "
            'keyed by name (json_file, text_dir) needs no labels_file: '
            "without one the corpus takes the dataset's class names.")
