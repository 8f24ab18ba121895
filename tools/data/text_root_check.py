"""The class-text part of ``check_data_root.py``.

Finds every class-text corpus a config builds (``ClassTextCorpus`` dicts
anywhere in it: the model's, the ``ClassTextDataset``'s, the AnSS hook's)
and checks, without tokenising anything, what the corpus would read: its
labels file, that it names the dataset's classes in the dataset's order,
and which classes have a description (the others fall back to the
prompts alone, paper §3.2).
"""
import os.path as osp
from typing import Iterator, List, Optional, Sequence

from vlltr_mm.datasets.annotation_io import read_class_names
from vlltr_mm.datasets.class_text.class_order import check_class_order
from vlltr_mm.datasets.class_text.text_sources import (
    DEFAULT_DROP_SECTIONS,
    collect_descriptions,
)

#: Corpus keys that point at files.
SOURCE_KEYS = ('labels_file', 'wiki_dir', 'json_file', 'text_dir')
#: Class names shown in a message.
SHOWN = 10


def _walk(value) -> Iterator[dict]:
    if isinstance(value, dict):
        if value.get('type') == 'ClassTextCorpus':
            yield value
        for item in value.values():
            yield from _walk(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _walk(item)


def find_corpora(cfg) -> List[dict]:
    """The distinct ``ClassTextCorpus`` configs in ``cfg``.

    Args:
        cfg (Config | dict): The loaded config.

    Returns:
        list[dict]: One per distinct set of sources, in config order.
    """
    found, seen = [], set()
    for corpus in _walk(dict(cfg)):
        key = tuple(str(corpus.get(k)) for k in SOURCE_KEYS + (
            'class_names', ))
        if key not in seen:
            seen.add(key)
            found.append(corpus)
    return found


def check_corpus(corpus: dict, classes: Optional[Sequence[str]],
                 classes_source: Optional[str], found,
                 num_classes: Optional[int] = None) -> None:
    """Check one corpus's files against the dataset's classes.

    Args:
        corpus (dict): A ``ClassTextCorpus`` config.
        classes (Sequence[str], optional): The dataset's class names, None
            if the dataset could not be read.
        classes_source (str, optional): Where they come from (its labels
            file), for messages.
        found: The ``Findings`` of ``check_data_root.py`` (``ok``,
            ``warn``, ``error``, ``failed``, ``capture_warnings``).
        num_classes (int, optional): The config's number of classes, to
            check the corpus against when ``classes`` is None. Defaults to
            None.
    """
    labels_file = corpus.get('labels_file')
    names = corpus.get('class_names')
    source = 'class_names'
    if names is None and labels_file:
        source = labels_file
        try:
            names = read_class_names(labels_file)
        except (OSError, ValueError, UnicodeError) as e:
            found.failed('class text', e, 'write it with the labels tool '
                         'of the dataset, see docs/data_preparation.md')
            return
    if names is None:  # the corpus takes the dataset's names
        names, source = classes, classes_source
    if names is None:
        return
    if classes is None and num_classes and len(names) != num_classes:
        found.error(f'class text: {source} names {len(names)} classes, the '
                    f'config has num_classes={num_classes}')
        return
    if classes is not None and source != classes_source:
        try:
            with found.capture_warnings():
                check_class_order(
                    classes, f'the dataset ({classes_source})', names,
                    f'the class text ({source})', classes_source
                    if classes_source and osp.isfile(classes_source) else
                    None)
        except ValueError as e:
            found.error(f'class text: {e}')
            return
    _check_descriptions(corpus, list(names), found)


def _check_descriptions(corpus: dict, names: List[str], found) -> None:
    """Warn, naming them, about classes without a description."""
    sources = {k: corpus.get(k) for k in ('wiki_dir', 'json_file',
                                          'text_dir')}
    if not any(sources.values()):
        found.warn('class text: no wiki_dir, json_file or text_dir; every '
                   'class uses the prompts alone')
        return
    try:
        with found.capture_warnings():
            docs, _ = collect_descriptions(
                names,
                drop_sections=corpus.get('drop_sections',
                                         DEFAULT_DROP_SECTIONS),
                **sources)
    except (OSError, ValueError) as e:
        found.failed('class text', e)
        return
    given = ', '.join(f'{k}={v}' for k, v in sources.items() if v)
    empty = [i for i, d in enumerate(docs) if not d]
    if empty:
        shown = ', '.join(f'{i} {names[i]!r}' for i in empty[:SHOWN])
        more = f' and {len(empty) - SHOWN} more' if len(empty) > SHOWN else ''
        found.warn(f'class text: {len(empty)} of {len(names)} classes have '
                   f'no description in {given} and fall back to the prompts '
                   f'alone: {shown}{more}')
    else:
        found.ok(f'class text: every one of the {len(names)} classes has a '
                 f'description ({given})')
    wiki_dir = sources['wiki_dir']
    if wiki_dir:
        extra = [osp.join(d, f'desc_{len(names)}.txt')
                 for d in (wiki_dir, osp.join(wiki_dir, 'wiki'))]
        if any(map(osp.isfile, extra)):
            found.warn(f'class text: {wiki_dir} has desc_{len(names)}.txt, '
                       f'more descriptions than the {len(names)} classes: '
                       'is it the text of another class list?')
