"""Choose the demo's inference hyper-parameters on the val split.

The fusion weight ``alpha`` of the LGR head and the strength ``tau`` of
post-hoc logit adjustment change only how the trained model's scores are
combined, so they are chosen from one val-split prediction dump per
checkpoint: every grid point re-scores the dumped branch probabilities with
the formula of ``LGRHead.branch_scores`` / ``LogitAdjustedLinearClsHead``
(tests check the two agree) and is ranked by val balanced accuracy (the
mean of per-class accuracies). The test split is never read here.
"""
import pickle
from typing import Dict, List, Optional, Sequence

import numpy as np

ALPHAS = tuple(np.round(np.linspace(0, 1, 11), 2).tolist())
TAUS = tuple(np.round(np.linspace(0, 2, 9), 2).tolist())


def load_predictions(path: str) -> Dict[str, np.ndarray]:
    """Read a ``tools/test.py --out x.pkl`` dump.

    Returns:
        dict: ``gt`` [N] int64, ``score`` [N, C] and, for the LGR head,
        ``image`` and ``text`` [N, C] (branch probabilities, float64).
    """
    with open(path, 'rb') as f:
        samples = pickle.load(f)
    out = dict(gt=np.array([int(np.asarray(s['gt_label']).reshape(-1)[0])
                            for s in samples]))
    for key, field in (('score', 'pred_score'), ('image', 'pred_score_image'),
                       ('text', 'pred_score_text')):
        if field in samples[0]:
            out[key] = np.stack([np.asarray(s[field], np.float64)
                                 for s in samples])
    return out


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def log_prior(counts: Sequence[int]) -> np.ndarray:
    """``log(pi)`` [C] float64, exactly as the heads' ``ClassPrior``
    computes it (a class without images counts as one)."""
    import torch

    from vlltr_mm.models.utils.class_prior import ClassPrior
    return ClassPrior(counts).log_prior(torch.float64).numpy()


def rescore(pred: Dict[str, np.ndarray], log_pi: np.ndarray,
            alpha: Optional[float] = None, tau: float = 0.0) -> np.ndarray:
    """Class probabilities [N, C] for ``alpha`` / ``tau``.

    For an LGR dump (``image`` and ``text`` present): ``alpha *
    softmax(log p_img - tau * log pi) + (1 - alpha) * p_txt`` (``alpha``
    None keeps the dumped fused score). Otherwise ``softmax(log p - tau *
    log pi)``, which equals adjusting the logits.
    """
    if 'image' in pred and alpha is not None:
        image = _softmax(np.log(pred['image']) - tau * log_pi)
        return alpha * image + (1 - alpha) * pred['text']
    return _softmax(np.log(pred['score']) - tau * log_pi)


def balanced_accuracy(score: np.ndarray, gt: np.ndarray) -> float:
    """Mean over present classes of per-class top-1 accuracy, in %."""
    hit = score.argmax(1) == gt
    classes = np.unique(gt)
    return float(np.mean([hit[gt == c].mean() for c in classes]) * 100)


def select(pred: Dict[str, np.ndarray], counts: Sequence[int], what: str,
           default_alpha: float = 0.2) -> dict:
    """Grid search on val predictions.

    Args:
        pred (dict): From :func:`load_predictions` (val split).
        counts (Sequence[int]): Training images per class.
        what (str): ``'tau'``, ``'alpha'`` or ``'alpha+tau'``.
        default_alpha (float): The config's alpha; among equally good
            points the smallest tau, then the alpha closest to this, wins.
            Defaults to 0.2.

    Returns:
        dict: ``alpha`` (None for ``'tau'``), ``tau``, ``val_acc`` (the
        best val balanced accuracy) and ``grid`` (every point tried).
    """
    log_pi = log_prior(counts)
    alphas: List[Optional[float]] = [None]
    taus: Sequence[float] = (0.0, )
    if 'alpha' in what:
        alphas = list(ALPHAS)
    if 'tau' in what:
        taus = TAUS
    grid = []
    for tau in taus:
        for alpha in alphas:
            acc = balanced_accuracy(rescore(pred, log_pi, alpha, tau),
                                    pred['gt'])
            grid.append(dict(alpha=alpha, tau=tau, val_acc=round(acc, 4)))

    def rank(p):
        near = 0.0 if p['alpha'] is None else abs(p['alpha'] - default_alpha)
        return (-p['val_acc'], p['tau'], near)

    best = min(grid, key=rank)
    return dict(best, grid=grid)


def options(choice: dict) -> List[str]:
    """``--cfg-options`` that make ``tools/test.py`` use ``choice``."""
    opts = []
    if choice.get('alpha') is not None:
        opts.append(f"model.head.alpha={choice['alpha']}")
    if choice.get('tau') is not None:
        opts.append(f"model.head.posthoc_tau={choice['tau']}")
    return opts
