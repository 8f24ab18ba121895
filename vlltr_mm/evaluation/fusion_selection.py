"""Choose the LGR fusion weight ``alpha`` and the post-hoc ``tau`` on val.

Both only change how a trained model's scores are combined: the LGR head
predicts ``alpha * P^I + (1 - alpha) * P^T`` (VL-LTR Eq. 7 weighted, see
``LGRHead``) and post-hoc logit adjustment (Menon et al., ICLR 2021, Eq. 9)
subtracts ``tau * log(pi)`` from the logits. So one prediction dump of a
split (``tools/test.py --out x.pkl``: the LGR head stores the branch
probabilities ``pred_score_image`` / ``pred_score_text``) is enough to score
every grid point: :func:`rescore` applies the heads' own formula (tests check
it against ``LGRHead`` and ``LogitAdjustedLinearClsHead``) and each point is
ranked by balanced accuracy (the mean of per-class accuracies).

Ties go to the smaller ``tau``, then to the ``alpha`` nearest the config's,
then to the smaller ``alpha``. ``tools/analysis/choose_fusion.py`` and the
CPU demo (``tools/demo/``) both choose with :func:`select`.
"""
import pickle
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

#: The default grids: alpha 0, 0.1, ..., 1 and tau 0, 0.25, ..., 2.
ALPHAS = tuple(np.round(np.linspace(0, 1, 11), 2).tolist())
TAUS = tuple(np.round(np.linspace(0, 2, 9), 2).tolist())
#: What :func:`select` can choose.
SELECTIONS = ('alpha', 'tau', 'alpha+tau')
TARGETS = ('image', 'fused')
# Samples re-scored at once: bounds the temporary memory to a few
# [_CHUNK, C] float64 arrays whatever the split size.
_CHUNK = 4096
_FIELDS = (('score', 'pred_score'), ('image', 'pred_score_image'),
           ('text', 'pred_score_text'))


def load_predictions(path: str) -> Dict[str, np.ndarray]:
    """Read a ``tools/test.py --out x.pkl`` dump (``DumpResults``).

    Args:
        path (str): The pickle file.

    Returns:
        dict: ``gt`` [N] int64, ``score`` [N, C] and, for the LGR head,
        ``image`` and ``text`` [N, C] (branch probabilities), each in the
        dumped dtype.

    Raises:
        ValueError: If the file holds no samples, or a sample lacks
            ``gt_label`` / ``pred_score`` or a field the first one has.
    """
    with open(path, 'rb') as f:
        samples = pickle.load(f)
    if not isinstance(samples, list) or not samples:
        raise ValueError(f'{path}: expected a non-empty list of samples '
                         '(tools/test.py --out x.pkl --out-item pred)')
    fields = [(k, f) for k, f in _FIELDS if f in samples[0]]
    for i, s in enumerate(samples):
        missing = [f for f in ('gt_label', 'pred_score') if f not in s]
        missing += [f for _, f in fields if f not in s]
        if missing:
            raise ValueError(f'{path}: sample {i} has no {missing}; dump a '
                             'labelled split with the same head')
    out = dict(gt=np.array([int(np.asarray(s['gt_label']).reshape(-1)[0])
                            for s in samples], np.int64))
    for key, field in fields:
        out[key] = np.stack([np.asarray(s[field]) for s in samples])
    return out


def log_prior(counts: Sequence[int]) -> np.ndarray:
    """``log(pi)`` [C] float64, exactly as the heads' ``ClassPrior``
    computes it (a class without images counts as one)."""
    import torch

    from vlltr_mm.models.utils.class_prior import ClassPrior
    return ClassPrior(counts).log_prior(torch.float64).numpy()


def _softmax(x: np.ndarray) -> np.ndarray:
    x = x - x.max(axis=1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=1, keepdims=True)


def rescore(pred: Dict[str, np.ndarray],
            log_pi: np.ndarray,
            alpha: Optional[float] = None,
            tau: float = 0.0,
            target: str = 'image') -> np.ndarray:
    """Class probabilities [N, C] float64 for ``alpha`` / ``tau``.

    For an LGR dump (``image`` and ``text`` present, ``alpha`` given):
    ``alpha * softmax(log p_img - tau * log pi) + (1 - alpha) * p_txt``
    (``target='image'``, the head's default) or ``softmax(log(alpha * p_img
    + (1 - alpha) * p_txt) - tau * log pi)`` (``target='fused'``).
    Otherwise ``softmax(log p - tau * log pi)`` of the dumped score, which
    equals adjusting the logits. The dump must be made with ``tau = 0``.

    Args:
        pred (dict): From :func:`load_predictions`.
        log_pi (np.ndarray): :func:`log_prior` [C].
        alpha (float, optional): Image-branch weight; None re-scores the
            dumped ``score``. Defaults to None.
        tau (float): Adjustment strength. Defaults to 0.0.
        target (str): ``'image'`` or ``'fused'``, the head's
            ``posthoc_target``. Defaults to ``'image'``.
    """
    return _Rescorer(pred, log_pi, target)(alpha, tau)


class _Rescorer:
    """:func:`rescore` of one set of predictions at many (alpha, tau)
    points: the float64 copies and ``log p`` are made once, and for
    ``target='image'`` the adjusted image softmax once per tau (it does not
    depend on alpha), so a tau-major grid pays it ``len(taus)`` times
    instead of once per point."""

    def __init__(self, pred, log_pi, target):
        self.pred, self.log_pi, self.target = pred, log_pi, target
        self._f64, self._log = {}, {}
        self._tau = self._adjusted = None

    def f64(self, key):
        if key not in self._f64:
            self._f64[key] = self.pred[key].astype(np.float64)
        return self._f64[key]

    def log(self, key):
        if key not in self._log:
            self._log[key] = np.log(self.f64(key))
        return self._log[key]

    def __call__(self, alpha, tau):
        # A probability that underflowed to 0 in the dump has log -inf and
        # stays 0, whatever tau.
        with np.errstate(divide='ignore'):
            if 'image' not in self.pred or alpha is None:
                return _softmax(self.log('score') - tau * self.log_pi)
            image, text = self.f64('image'), self.f64('text')
            if self.target == 'image':
                if tau != self._tau:
                    self._tau, self._adjusted = tau, _softmax(
                        self.log('image') - tau * self.log_pi)
                return alpha * self._adjusted + (1 - alpha) * text
            fused = alpha * image + (1 - alpha) * text
            return _softmax(np.log(fused) - tau * self.log_pi) \
                if tau else fused


def balanced_accuracy(score: np.ndarray, gt: np.ndarray) -> float:
    """Mean over present classes of per-class top-1 accuracy, in %."""
    return _balanced(
        np.bincount(gt, (score.argmax(1) == gt), score.shape[1]),
        np.bincount(gt, minlength=score.shape[1]))


def _balanced(hits: np.ndarray, support: np.ndarray) -> float:
    present = support > 0
    return float(np.mean(hits[present] / support[present]) * 100)


def check_grid(values: Sequence[float], name: str,
               upper: Optional[float]) -> Tuple[float, ...]:
    """A grid as a sorted tuple of unique floats in ``[0, upper]``.

    Raises:
        ValueError: If it is empty or a value is out of range.
    """
    grid = tuple(sorted({float(v) for v in values}))
    bad = [v for v in grid if not (v >= 0 and (upper is None or v <= upper))]
    if not grid or bad:
        bound = f'[0, {upper:g}]' if upper is not None else '>= 0'
        raise ValueError(f'the {name} grid must be non-empty values in '
                         f'{bound}, got {list(values)}')
    return grid


def select(pred: Dict[str, np.ndarray],
           counts: Sequence[int],
           what: str,
           default_alpha: float = 0.5,
           alphas: Sequence[float] = ALPHAS,
           taus: Sequence[float] = TAUS,
           target: str = 'image') -> dict:
    """Grid search on (val) predictions.

    Args:
        pred (dict): From :func:`load_predictions`, dumped with ``tau = 0``.
        counts (Sequence[int]): Training images per class (the head's
            class prior).
        what (str): ``'tau'``, ``'alpha'`` or ``'alpha+tau'``. ``alpha``
            needs an LGR dump; without ``tau`` it stays 0, without
            ``alpha`` an LGR dump keeps ``default_alpha``.
        default_alpha (float): The config's alpha; among equally good
            points the smallest tau, then the alpha closest to this, then
            the smaller alpha wins. Defaults to 0.5 (``LGRHead``'s).
        alphas (Sequence[float]): The alpha grid, in [0, 1].
            Defaults to :data:`ALPHAS`.
        taus (Sequence[float]): The tau grid, >= 0. Defaults to
            :data:`TAUS`.
        target (str): The head's ``posthoc_target``. Defaults to
            ``'image'``.

    Returns:
        dict: ``alpha`` (None for a dump without branch scores), ``tau``,
        ``val_acc`` (the best balanced accuracy, %) and ``grid`` (every
        point tried, tau-major).

    Raises:
        ValueError: For an unknown ``what`` / ``target``, a bad grid, or
            ``alpha`` asked of a dump without branch scores.
    """
    if what not in SELECTIONS:
        raise ValueError(f'what must be one of {SELECTIONS}, got {what!r}')
    if target not in TARGETS:
        raise ValueError(f'target must be one of {TARGETS}, got {target!r}')
    branches = 'image' in pred and 'text' in pred
    if 'alpha' in what and not branches:
        raise ValueError('choosing alpha needs the branch scores '
                         '(pred_score_image / pred_score_text) of an LGR '
                         "head; this dump has only pred_score: use 'tau'")
    cand_alphas: List[Optional[float]] = [None]
    if branches:
        cand_alphas = list(check_grid(alphas, 'alpha', 1.0)) \
            if 'alpha' in what else [float(default_alpha)]
    cand_taus = check_grid(taus, 'tau', None) if 'tau' in what else (0.0, )
    points = [(a, t) for t in cand_taus for a in cand_alphas]
    log_pi = log_prior(counts)
    gt = pred['gt']
    num_classes = pred['score'].shape[1]
    hits = np.zeros((len(points), num_classes))
    for start in range(0, len(gt), _CHUNK):
        part = {k: v[start:start + _CHUNK] for k, v in pred.items()}
        scores = _Rescorer(part, log_pi, target)
        for i, (alpha, tau) in enumerate(points):
            right = scores(alpha, tau).argmax(1) == part['gt']
            hits[i] += np.bincount(part['gt'], right, num_classes)
    support = np.bincount(gt, minlength=num_classes)
    grid = [
        # Rounded, so that equal accuracies reached through different
        # float sums tie.
        dict(alpha=a, tau=t, val_acc=round(_balanced(h, support), 4))
        for (a, t), h in zip(points, hits)
    ]

    def rank(p):
        alpha = -1.0 if p['alpha'] is None else p['alpha']
        near = 0.0 if p['alpha'] is None else abs(alpha - default_alpha)
        return (-p['val_acc'], p['tau'], round(near, 9), alpha)

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


def grid_table(choice: dict) -> str:
    """The grid of :func:`select` as text: one row per tau, one column per
    alpha, balanced accuracy in %, the chosen point starred."""
    alphas = sorted({p['alpha'] for p in choice['grid']},
                    key=lambda a: -1 if a is None else a)
    taus = sorted({p['tau'] for p in choice['grid']})
    acc = {(p['alpha'], p['tau']): p['val_acc'] for p in choice['grid']}
    head = ['tau \\ alpha'] + ['-' if a is None else f'{a:g}'
                               for a in alphas]
    rows = [head]
    for t in taus:
        row = [f'{t:g}']
        for a in alphas:
            star = '*' if (a, t) == (choice['alpha'], choice['tau']) else ''
            row.append(f"{acc[(a, t)]:.2f}{star}")
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    return '\n'.join('  '.join(c.rjust(w) for c, w in zip(r, widths))
                     for r in rows)
