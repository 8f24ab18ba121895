"""A readable per-class Markdown report of an AnSS artifact (VL-LTR §3.3).

It opens with a summary (:mod:`.anss_summary`): an overall line, whether
the scores separate the sentences, and a table with one row per class
(kept prompts / descriptions, L_lin range of kept and dropped sentences,
overlap with the cut-off set). Then, for every class: its name, the kept
anchor sentences best first with their L_lin (Eq. 2; lower is better),
then the dropped sentences, each marked as a prompt (a filled template) or
a description sentence, as the corpus's ``is_prompt`` flags them. Written
by ``AnchorSentenceSelectionHook`` next to its artifact and by
``tools/analysis/anss_report.py`` from any artifact and corpus.
"""
import math
from typing import List, Optional, Sequence

import numpy as np

from vlltr_mm.utils.files import atomic_write

from .anss_summary import (
    SPREAD_FRACTION,
    SelectionSummary,
    overall_line,
    separation_line,
    summarize,
)


def report_path(artifact_path: str) -> str:
    """``anss_anchors.pth`` -> ``anss_anchors_report.md``."""
    stem = artifact_path[:-4] if artifact_path.endswith('.pth') else \
        artifact_path
    return f'{stem}_report.md'


def check_corpus(art: dict, corpus, where: str) -> None:
    """Raise unless ``corpus`` is the one the artifact was computed on."""
    meta = art['meta']
    if meta.get('corpus_fingerprint') != corpus.fingerprint:
        raise ValueError(
            f'{where}: the corpus (fingerprint {corpus.fingerprint[:12]}, '
            f'{corpus.num_sentences} sentences) is not the one of the AnSS '
            f"artifact ({str(meta.get('corpus_fingerprint'))[:12]}, "
            f"{meta.get('num_sentences')} sentences); pass the config the "
            'artifact was computed with.')


def _cell(text: str) -> str:
    return text.replace('\\', '\\\\').replace('|', '\\|')


def _range(lo_hi: np.ndarray) -> str:
    lo, hi = lo_hi
    if math.isnan(lo):
        return '-'
    return f'{lo:.4f}' if lo == hi else f'{lo:.4f} – {hi:.4f}'


def _summary(s: SelectionSummary, names: Sequence[str], art: dict,
             m: int) -> List[str]:
    """The summary section: overall line, separation, per-class table."""
    lines = [
        '', '## Summary', '', f'Overall: {overall_line(art, s)}', '',
        separation_line(s), '',
        '| class | name | kept prompts | kept descriptions | L_lin kept | '
        'L_lin dropped | spread / ln P | in cut-off set |',
        '| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: |'
    ]
    for c, name in enumerate(names):
        kept = int(s.kept_prompts[c] + s.kept_descriptions[c])
        if math.isnan(s.threshold):
            spread = '-'
        elif s.unscored[c]:
            spread = 'unscored'
        else:
            log_p = s.threshold / SPREAD_FRACTION
            spread = f'{100 * s.spread[c] / log_p:.2f} %' + (
                ' (flat)' if s.flat[c] else '')
        lines.append(
            f'| {c} | {_cell(name)} | {s.kept_prompts[c]} | '
            f'{s.kept_descriptions[c]} | {_range(s.kept_range[c])} | '
            f'{_range(s.dropped_range[c])} | {spread} | '
            f'{s.overlap[c]} / {kept} |')
    lines += [
        '', f'*L_lin kept / dropped*: min – max (`-`: none or not scored). '
        '*spread / ln P*: max - min of the class\'s L_lin over ln P (the '
        'L_lin of a sentence equally similar to every pool image); '
        f'*flat*: below {SPREAD_FRACTION:.0%} with sentences dropped. '
        f'*in cut-off set*: kept anchors among the class\'s first M = {m} '
        'sentences (all of them when the class has at most M).'
    ]
    return lines


def _rows(order: np.ndarray, scores: np.ndarray, corpus,
          first: int) -> List[str]:
    lines = []
    for rank, i in enumerate(order.tolist(), first):
        s = scores[i]
        score = f'{s:.4f}' if math.isfinite(s) else (
            '-' if math.isnan(s) else 'inf')
        kind = 'prompt' if corpus.is_prompt[i] else 'description'
        lines.append(f'| {rank} | {score} | {kind} | {i} | '
                     f'{_cell(corpus.sentences[i])} |')
    return lines


def render_report(art: dict, corpus,
                  class_names: Optional[Sequence[str]] = None) -> str:
    """The Markdown report of ``art`` for ``corpus``.

    Args:
        art (dict): An AnSS artifact (``indices``, ``mask``, ``scores``,
            ``meta``).
        corpus (ClassTextCorpus): The corpus it was computed on.
        class_names (Sequence[str], optional): Class names. Defaults to
            None (the corpus's).

    Returns:
        str: Markdown text.
    """
    meta = art['meta']
    names = list(class_names or corpus.class_names)
    indices, mask = art['indices'].numpy(), art['mask'].numpy()
    scores = art['scores'].double().numpy()
    offsets = np.asarray(corpus.class_offsets)
    selection = meta.get('selection')
    head = '| # | L_lin | kind | row | sentence |\n| ---: | ---: | --- | ' \
        '---: | --- |'
    pool = meta.get('pool_options', 'not recorded')
    lines = [
        '# AnSS anchor sentences', '',
        f"Selection `{selection}`, M = {meta.get('num_anchors')} anchors "
        f'per class, {len(names)} classes, {corpus.num_sentences} '
        f"sentences, {meta.get('num_pool_images')} pool images (pool "
        f"`{pool}`); stage-1 checkpoint `{meta.get('checkpoint')}`.", '',
        'L_lin is the text-to-image loss of Eq. 2 on the pool (lower is '
        'better; `inf`: the pool has no image of the class, `-`: cut-off '
        'rule, not scored). *prompt* rows are filled templates, '
        '*description* rows come from the class text. In each class '
        'section, kept sentences are listed best first, then the dropped '
        'ones (best first for AnSS, in corpus order for cut-off).'
    ]
    lines += _summary(summarize(art, corpus), names, art,
                      int(indices.shape[1]))
    for c, name in enumerate(names):
        kept = indices[c][mask[c]]
        rows = np.arange(offsets[c], offsets[c + 1])
        dropped = rows[~np.isin(rows, kept)]
        if selection == 'anss':
            dropped = dropped[np.argsort(scores[dropped], kind='stable')]
        prompts = int(corpus.is_prompt[kept].sum())
        lines += [
            '', f'## {c}: {_cell(name)}', '',
            f'Kept {len(kept)} of {len(rows)} sentences ({prompts} prompts, '
            f'{len(kept) - prompts} descriptions); '
            f'{int((~mask[c]).sum())} padded slots.', '', '### Kept', '',
            head
        ] + _rows(kept, scores, corpus, 1)
        lines += ['', '### Dropped', '']
        lines += ([head] + _rows(dropped, scores, corpus, len(kept) + 1)
                  if len(dropped) else ['(none)'])
    return '\n'.join(lines) + '\n'


def write_report(path: str, art: dict, corpus,
                 class_names: Optional[Sequence[str]] = None) -> None:
    """Render the report and write it atomically to ``path``."""
    text = render_report(art, corpus, class_names)
    with atomic_write(path, 'w') as f:
        f.write(text)
