"""Per-class summary of an AnSS selection (VL-LTR §3.3).

What each class kept (prompts / descriptions), the L_lin (Eq. 2) range of
its kept and dropped sentences, how many of its anchors the cut-off rule
(its first M sentences, Table 4 #7) would have kept too, and whether its
scores separate its sentences at all.

*Flat* classes: the L_lin of a sentence equally similar to all P pool
images is ln P (chance), so ln P is the natural unit of L_lin. A class
with a choice to make (more than M sentences) is flagged when the spread
max - min of its L_lin is below :data:`SPREAD_FRACTION` of ln P: its best
sentence then gives its class's images at most ``P ** 0.01`` times (x1.10
for P = 20,000) the geometric-mean probability that its worst does: the
ranking rests on tiny differences (e.g. a stage-1 text tower that maps all
sentences of a class to nearly one embedding). The spread measures
separation, not meaning: random towers separate sentences too.
"""
import math
from typing import List, NamedTuple

import numpy as np

SPREAD_FRACTION = 0.01


class SelectionSummary(NamedTuple):
    """Per-class statistics, arrays of length C.

    Attributes:
        kept_prompts (np.ndarray): int64, kept filled templates.
        kept_descriptions (np.ndarray): int64, kept description sentences.
        num_dropped (np.ndarray): int64, sentences not kept.
        kept_range (np.ndarray): float64 ``[C, 2]`` min and max L_lin of
            the kept sentences (NaN: not scored).
        dropped_range (np.ndarray): float64 ``[C, 2]``, the same for the
            dropped ones (NaN: none dropped or not scored).
        overlap (np.ndarray): int64, kept sentences among the class's
            first M (the cut-off set).
        spread (np.ndarray): float64, max - min of the class's finite
            L_lin (NaN: no finite score).
        threshold (float): ``SPREAD_FRACTION * ln P`` in nats (NaN for
            the cut-off rule or P < 2).
        flat (np.ndarray): bool, a choice was made and ``spread <
            threshold``.
        unscored (np.ndarray): bool, no finite score (cut-off rule, or no
            pool image of the class).
    """
    kept_prompts: np.ndarray
    kept_descriptions: np.ndarray
    num_dropped: np.ndarray
    kept_range: np.ndarray
    dropped_range: np.ndarray
    overlap: np.ndarray
    spread: np.ndarray
    threshold: float
    flat: np.ndarray
    unscored: np.ndarray


def _class_range(values: np.ndarray, select: np.ndarray,
                 starts: np.ndarray) -> np.ndarray:
    """Per-class ``[min, max]`` of ``values[select]``; NaN where empty."""
    lo = np.minimum.reduceat(np.where(select, values, np.inf), starts)
    hi = np.maximum.reduceat(np.where(select, values, -np.inf), starts)
    out = np.stack([lo, hi], axis=1)
    out[~np.isfinite(out).all(axis=1)] = np.nan
    return out


def summarize(art: dict, corpus) -> SelectionSummary:
    """The per-class statistics of an artifact.

    Args:
        art (dict): An AnSS artifact (``indices`` [C, M], ``mask`` [C, M],
            ``scores`` [N], ``meta``).
        corpus (ClassTextCorpus): The corpus it was computed on (every
            class has >= 1 sentence, as :func:`select_anchors` requires).

    Returns:
        SelectionSummary: The statistics.
    """
    offsets = np.asarray(corpus.class_offsets, dtype=np.int64)
    labels = np.asarray(corpus.sentence_labels, dtype=np.int64)
    num_classes, n = len(offsets) - 1, int(offsets[-1])
    m = art['indices'].shape[1]
    kept = np.zeros(n, dtype=bool)
    kept[art['indices'][art['mask']].numpy()] = True
    prompt = np.asarray(corpus.is_prompt, dtype=bool)
    cutoff = np.arange(n) - offsets[labels] < m

    def per_class(select):
        return np.bincount(labels[select], minlength=num_classes)

    scores = art['scores'].double().numpy()
    finite = np.isfinite(scores)
    starts = offsets[:-1]
    kept_range = _class_range(scores, kept & finite, starts)
    dropped_range = _class_range(scores, ~kept & finite, starts)
    whole = _class_range(scores, finite, starts)
    spread = whole[:, 1] - whole[:, 0]
    pool = art['meta'].get('num_pool_images') or 0
    threshold = SPREAD_FRACTION * math.log(pool) if (
        art['meta'].get('selection') == 'anss' and pool > 1) else math.nan
    num_dropped = per_class(~kept)
    with np.errstate(invalid='ignore'):
        flat = (num_dropped > 0) & (spread < threshold)
    return SelectionSummary(per_class(kept & prompt),
                            per_class(kept & ~prompt), num_dropped,
                            kept_range, dropped_range,
                            per_class(kept & cutoff), spread, threshold,
                            flat, np.isnan(spread))


def _pct(part: int, whole: int) -> str:
    return f'{100 * part / whole:.1f} %' if whole else '-'


def _overlap(s: SelectionSummary) -> str:
    kept = int(s.kept_prompts.sum() + s.kept_descriptions.sum())
    overlap = int(s.overlap.sum())
    return (f'{overlap} of {kept} anchors ({_pct(overlap, kept)}) are also '
            'in the cut-off set (the first M sentences of their class)')


def overall_line(art: dict, s: SelectionSummary) -> str:
    """One sentence over all classes: kept kinds, overlap with cut-off."""
    prompts, descs = int(s.kept_prompts.sum()), int(s.kept_descriptions.sum())
    return (f'{len(s.overlap)} classes, {prompts + descs} anchors kept '
            f'({prompts} prompts, {descs} descriptions; '
            f'{int((~art["mask"]).sum())} padded slots); {_overlap(s)}.')


def separation_line(s: SelectionSummary) -> str:
    """Whether the scores separate the sentences, the criterion stated."""
    if math.isnan(s.threshold):
        return ('Sentences were not scored (cut-off rule or a pool of '
                'fewer than 2 images).')
    choice = int((s.num_dropped > 0).sum())
    spreads = s.spread[(s.num_dropped > 0) & ~s.unscored]
    median = f'{np.median(spreads):.4g}' if len(spreads) else '-'
    head = (f'{int(s.flat.sum())} of {choice} classes with a choice have '
            f'an L_lin spread (max - min) below {SPREAD_FRACTION:.0%} of '
            f'ln P = {s.threshold:.4g} nats (median spread {median} nats)')
    unscored = int(s.unscored.sum())
    tail = (f'; {unscored} classes have no pool image (unscored, cut-off '
            'order)') if unscored else ''
    if s.flat.any():
        return (f'{head}{tail}. The scores barely separate the sentences of '
                'these classes (flat): their ranking rests on tiny '
                'differences, e.g. from a stage-1 text tower that maps all '
                'sentences of a class to nearly one embedding.')
    return f'{head}{tail}: the scores separate the sentences.'


def summary_lines(art: dict, corpus) -> List[str]:
    """A few log lines that summarise the selection."""
    s = summarize(art, corpus)
    meta = art['meta']
    return [
        f"AnSS ({meta['selection']}, M={meta['num_anchors']}): chose "
        f'{int(s.kept_prompts.sum())} prompt and '
        f'{int(s.kept_descriptions.sum())} description sentences, '
        f"{int((~art['mask']).sum())} padded slots",
        f'AnSS summary: {len(s.overlap)} classes; {_overlap(s)}.',
        f'AnSS summary: {separation_line(s)}'
    ]
