"""Writing the ``labels.txt`` files that the benchmark configs read.

Shared by ``imagenet_lt_labels.py``, ``places_lt_labels.py`` and
``inat2018_labels.py``: each builds the class names of its benchmark in
label order and hands them here. The text of a file is read back with
:func:`vlltr_mm.datasets.annotation_io.parse_class_names`, the parser of
the datasets' and the text corpus's reader, before it is written, so a
file this module writes is one the training run accepts and names exactly
the same classes.
"""
import argparse
import os.path as osp
import sys
from typing import Callable, List, Sequence

from vlltr_mm.datasets.annotation_io import parse_class_names
from vlltr_mm.utils.files import atomic_write


def add_out_argument(parser: argparse.ArgumentParser,
                     defaults: Sequence[str]) -> None:
    """Add ``--out`` (repeatable) with the paths the configs read.

    Args:
        parser (argparse.ArgumentParser): The tool's parser.
        defaults (Sequence[str]): Paths used when ``--out`` is not given.
    """
    parser.add_argument(
        '--out', action='append', default=None, metavar='PATH',
        help='labels file to write; repeat for several (default: '
        f'{" and ".join(defaults)}, the paths the configs read)')
    parser.set_defaults(out_defaults=list(defaults))


def run_steps(steps: Callable[[], List[str]]) -> int:
    """Run a labels tool's work; print its report, or the error.

    Args:
        steps (Callable[[], list[str]]): Reads, checks and writes; returns
            the lines to print.

    Returns:
        int: Exit status: 0, or 1 if a step raised (the message, which
        names the file and line at fault, goes to stderr).
    """
    try:
        messages = steps()
    except (OSError, ValueError, UnicodeError, RuntimeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 1
    print('\n'.join(messages))
    return 0


def check_names(names: Sequence[str], source: str) -> None:
    """Raise unless every name is usable as one line of a labels file.

    Args:
        names (Sequence[str]): Class names in label order.
        source (str): Where the names come from, for the message.

    Raises:
        ValueError: For an empty name, one with a line break or outer
            spaces, or a repeated name (both labels named).
    """
    first = {}
    for label, name in enumerate(names):
        if not name or name != name.strip() or '\n' in name or '\r' in name:
            raise ValueError(f'{source}: class {label} has the unusable name '
                             f'{name!r} (empty, line break or outer space)')
        if name in first:
            raise ValueError(
                f'{source}: classes {first[name]} and {label} are both '
                f'named {name!r}; class names must be unique')
        first[name] = label


def write_labels(names: Sequence[str], outs: Sequence[str],
                 source: str) -> List[str]:
    """Write one name per line to every path in ``outs``.

    Each file is written next to its target, read back and only then
    renamed over it, so a failed or interrupted run leaves the old file.

    Args:
        names (Sequence[str]): Class names in label order.
        outs (Sequence[str]): Files to write (folders are created).
        source (str): Where the names come from, for messages.

    Returns:
        list[str]: One line per file for the user (written, replaced or
        unchanged).

    Raises:
        ValueError: See :func:`check_names`; or if the file would not read
            back as ``names`` (names that all look like the authors'
            indexed layout are re-interpreted by the reader).
    """
    check_names(names, source)
    text = ''.join(f'{name}\n' for name in names)
    report = []
    for out in outs:
        before = None
        if osp.isfile(out):
            with open(out, encoding='utf-8', errors='replace') as f:
                before = f.read()
        if before == text:
            report.append(f'unchanged: {out} ({len(names)} class names)')
            continue
        if parse_class_names(text, out) != list(names):
            raise ValueError(
                f'{source}: the names read back differently from '
                f'{out}: every line looks like the authors\' indexed '
                'layout ("n01440764 0 tench", "/a/airfield 0"); '
                'rename a class')
        with atomic_write(out) as f:
            f.write(text.encode('utf-8'))
        verb = 'wrote' if before is None else 'replaced'
        report.append(f'{verb}: {out} ({len(names)} class names)')
    return report
