"""A readable per-class Markdown report of an AnSS artifact (VL-LTR §3.3).

For every class: its name, the kept anchor sentences best first with their
L_lin (Eq. 2; lower is better), then the dropped sentences, each marked as
a prompt (a filled template) or a description sentence, as the corpus's
``is_prompt`` flags them. Written by ``AnchorSentenceSelectionHook`` next
to its artifact and by ``tools/analysis/anss_report.py`` from any artifact
and corpus.
"""
import math
from typing import List, Optional, Sequence

import numpy as np

from vlltr_mm.utils.files import atomic_write


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


def selection_summary(art: dict, corpus) -> str:
    """One log line: how many prompts / descriptions were kept."""
    chosen = art['indices'][art['mask']].numpy()
    prompts = int(np.asarray(corpus.is_prompt)[chosen].sum())
    return (f"AnSS ({art['meta']['selection']}, M="
            f"{art['meta']['num_anchors']}): chose {prompts} prompt and "
            f'{len(chosen) - prompts} description sentences, '
            f"{int((~art['mask']).sum())} padded slots")


def _cell(text: str) -> str:
    return text.replace('\\', '\\\\').replace('|', '\\|')


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
    lines = [
        '# AnSS anchor sentences', '',
        f"Selection `{selection}`, M = {meta.get('num_anchors')} anchors "
        f'per class, {len(names)} classes, {corpus.num_sentences} '
        f"sentences, {meta.get('num_pool_images')} pool images; stage-1 "
        f"checkpoint `{meta.get('checkpoint')}`.", '',
        'L_lin is the text-to-image loss of Eq. 2 on the pool (lower is '
        'better; `inf`: the pool has no image of the class, `-`: cut-off '
        'rule, not scored). *prompt* rows are filled templates, '
        '*description* rows come from the class text. Kept sentences are '
        'listed best first, then the dropped ones (best first for AnSS, in '
        'corpus order for cut-off).'
    ]
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
