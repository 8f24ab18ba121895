"""Building the class-major sentence list of the corpus (paper §3.2).

Kept apart from :class:`~.corpus.ClassTextCorpus` (which adds tokens, the
cache and sampling) because this is the slow step of a first build: it is
the step the progress bar follows.
"""
import sys
import warnings
from typing import List, Sequence, Tuple

import numpy as np
from mmengine.dist import get_rank
from mmengine.utils import ProgressBar

from .sentence_splitter import SentenceSplitter


class RankZeroProgress:
    """A progress bar with ETA on rank 0, silent elsewhere.

    MMEngine's :class:`~mmengine.utils.ProgressBar` leaves the cursor on
    its line; :meth:`close` ends the line so that the next log line starts
    on its own. The bar is redrawn about 100 times, not once per step, so
    that a log file of a 1000-class build stays short.

    Args:
        total (int): Number of steps.
        title (str): Printed on its own line before the bar.
    """

    def __init__(self, total: int, title: str) -> None:
        self._bar = None
        self._pending, self._step = 0, max(1, total // 100)
        if get_rank() == 0 and total > 0:
            sys.stdout.write(f'{title}\n')
            self._bar = ProgressBar(total, file=sys.stdout)

    def update(self, num: int = 1) -> None:
        """Advance by ``num`` steps."""
        self._pending += num
        if self._bar is not None and self._pending >= self._step:
            self._bar.update(self._pending)
            self._pending = 0

    def close(self) -> None:
        """Draw the last steps and end the bar's line."""
        if self._bar is not None:
            if self._pending:
                self._bar.update(self._pending)
            self._bar.file.write('\n')
            self._bar.file.flush()
            self._bar = None


def build_class_sentences(class_names: Sequence[str],
                          templates: Sequence[str], docs: Sequence[list],
                          splitter: SentenceSplitter
                          ) -> Tuple[List[str], np.ndarray, np.ndarray,
                                     List[str]]:
    """Prompts then unique description sentences, per class.

    Args:
        class_names (Sequence[str]): C names in label order.
        templates (Sequence[str]): Format strings with one ``{}`` slot.
        docs (Sequence[list]): Per class, free texts (split here) or lists
            of ready-made sentences (whitespace-normalised only).
        splitter (SentenceSplitter): Splits free text.

    Returns:
        tuple: ``sentences`` (N, class-major), ``class_offsets`` (int64
        [C + 1]), ``is_prompt`` (bool [N]) and the names of classes left
        with prompts only.

    Raises:
        ValueError: If a class ends with no sentence at all.
    """
    sentences: List[str] = []
    counts, num_prompts, no_desc = [], [], []
    progress = RankZeroProgress(
        len(class_names), f'ClassTextCorpus: splitting the descriptions of '
        f'{len(class_names)} classes')
    for c, name in enumerate(class_names):
        prompts = [t.replace('{}', name) for t in templates]
        desc: List[str] = []
        for doc in docs[c]:
            if isinstance(doc, str):
                desc.extend(splitter.split(doc))
            else:
                desc.extend(s for s in map(' '.join, map(str.split, doc))
                            if len(s) >= splitter.min_chars)
        # dict keeps first occurrences in order: exact duplicates go,
        # including description sentences equal to a prompt.
        unique = list(dict.fromkeys(prompts + desc))
        if not unique:
            raise ValueError(
                f'class {c} ({name!r}) has no sentences: no description '
                'text survived and templates are off')
        if len(unique) == len(dict.fromkeys(prompts)):
            no_desc.append(name)
        sentences.extend(unique)
        counts.append(len(unique))
        num_prompts.append(len(dict.fromkeys(prompts)))
        progress.update()
    progress.close()
    counts = np.asarray(counts, dtype=np.int64)
    class_offsets = np.concatenate([[0], np.cumsum(counts)])
    rank_in_class = (np.arange(len(sentences)) -
                     np.repeat(class_offsets[:-1], counts))
    is_prompt = rank_in_class < np.repeat(num_prompts, counts)
    return sentences, class_offsets, is_prompt, no_desc


def warn_prompt_only(names: Sequence[str], num_classes: int) -> None:
    """Warn, naming them, about classes that have no description."""
    if names:
        warnings.warn(
            f'{len(names)} of {num_classes} classes have no description '
            'sentences (missing file or entry, or nothing left after '
            f'cleaning) and use prompts only: {list(names)}')
