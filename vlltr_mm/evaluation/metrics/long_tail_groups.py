"""The many / medium / few-shot groups of long-tailed recognition (VL-LTR
§4.2) and the two rules of :class:`~.LongTailAccuracy` that score them."""
from typing import Dict, Tuple

import numpy as np
import torch

GROUP_RULES = ('consistent', 'authors')


def split_classes(counts: np.ndarray, many_threshold: int,
                  few_threshold: int, many_inclusive: bool,
                  few_inclusive: bool, rule: str) -> Dict[str, torch.Tensor]:
    """Split the classes by their training counts.

    Args:
        counts (ndarray): Training images per class [C].
        many_threshold (int): Count bounding many-shot classes.
        few_threshold (int): Count bounding few-shot classes.
        many_inclusive (bool): A class with ``many_threshold`` images is
            many-shot.
        few_inclusive (bool): A class with ``few_threshold`` images is
            few-shot.
        rule (str): One of :data:`GROUP_RULES`; under ``'authors'`` a
            class without training images is in no group (their lowest
            group is ``0 < n <= 20``).

    Returns:
        dict[str, Tensor]: Bool masks [C] named ``many``, ``medium`` and
        ``few``.
    """
    n = torch.from_numpy(counts)
    many = n >= many_threshold if many_inclusive else n > many_threshold
    few = n <= few_threshold if few_inclusive else n < few_threshold
    medium = ~(many | few)
    if rule == 'authors':
        few = few & (n > 0)
    return dict(many=many, medium=medium, few=few)


def score_groups(
        hit: torch.Tensor, gt: torch.Tensor, support: torch.Tensor,
        masks: Dict[str, torch.Tensor],
        rule: str) -> Tuple[torch.Tensor, Dict[str, float]]:
    """Per-class and per-group top-1 accuracy of one set of predictions.

    Args:
        hit (Tensor): Bool [N], whether each sample's top-1 prediction is
            right.
        gt (Tensor): Labels [N].
        support (Tensor): Evaluation samples per class [C] (float).
        masks (dict[str, Tensor]): Group masks of :func:`split_classes`.
        rule (str): ``'consistent'``: a group's accuracy is the mean of its
            present classes' accuracies; ``'authors'``: correct / count
            over the group's samples (``shot_acc`` of the authors'
            ``engine.py``).

    Returns:
        tuple[Tensor, dict[str, float]]: Per-class accuracy [C] in %, NaN
        for classes without evaluation samples, and the accuracy of each
        group in %, NaN for a group without evaluation samples.
    """
    hits = torch.bincount(gt, weights=hit.double(),
                          minlength=support.numel())
    present = support > 0
    class_acc = torch.where(present, hits / support.clamp(min=1) * 100,
                            torch.full_like(hits, float('nan')))
    groups = {}
    for name, mask in masks.items():
        if rule == 'authors':
            count = support[mask].sum()
            value = hits[mask].sum() / count * 100 if count else None
        else:
            chosen = mask & present
            value = class_acc[chosen].mean() if chosen.any() else None
        groups[name] = float('nan') if value is None else value.item()
    return class_acc, groups
