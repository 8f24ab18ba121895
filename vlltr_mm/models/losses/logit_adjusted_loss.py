"""Logit-adjusted cross-entropy (Menon et al., ICLR 2021, Eq. 10) and
balanced softmax (Ren et al., NeurIPS 2020).

MMPretrain 1.2 ships neither (its logit-adjustment pull request was never
merged), so they are written here. Both shift every logit by
``tau * log(pi_c)`` before the softmax cross-entropy, where ``pi`` is the
training-set label prior: a sample of class ``y`` must beat class ``j`` by
the margin ``tau * log(pi_j / pi_y)``, large for a rare ``y``, small (or
negative) for a frequent one. Predictions stay unadjusted: the trained
logits are already balanced.
"""
from typing import Optional, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.models.losses.utils import weight_reduce_loss
from mmpretrain.registry import MODELS

from ..utils.class_prior import ClassPrior


@MODELS.register_module()
class LogitAdjustedLoss(nn.Module):
    """Cross-entropy on ``logits + tau * log(pi)`` (Menon et al., Eq. 10).

    With ``tau = 0`` it is plain (label-smoothed) cross-entropy; with
    ``tau = 1`` it is the balanced softmax of Ren et al. Hard targets
    ``[N]`` become one-hot; soft targets ``[N, C]`` (``gt_score`` from
    Mixup / CutMix) are used as they are. Label smoothing then mixes the
    target with the uniform distribution, as MMPretrain's
    ``LabelSmoothLoss(mode='original')`` does:
    ``(1 - eps) * y + eps / C``.

    The prior lives in ``class_prior`` (a persistent buffer, so it is in
    the checkpoint); it is given here or set by ``ClassPriorHook`` from the
    training dataset before the first iteration.

    Args:
        tau (float): Adjustment strength, ``>= 0``. Defaults to 1.0.
        class_counts (Sequence[int], optional): Training images per class.
            Defaults to None (set by ``ClassPriorHook``).
        num_classes (int, optional): Number of classes, checked against the
            counts. Defaults to None.
        label_smooth_val (float): Smoothing ``eps`` in ``[0, 1)``.
            Defaults to 0.0.
        reduction (str): ``'none'``, ``'mean'`` or ``'sum'``.
            Defaults to ``'mean'``.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 tau: float = 1.0,
                 class_counts: Optional[Sequence[int]] = None,
                 num_classes: Optional[int] = None,
                 label_smooth_val: float = 0.0,
                 reduction: str = 'mean',
                 loss_weight: float = 1.0):
        super().__init__()
        if not tau >= 0:
            raise ValueError(f'tau must be >= 0, got {tau}')
        if not 0 <= label_smooth_val < 1:
            raise ValueError(f'label_smooth_val must be in [0, 1), got '
                             f'{label_smooth_val}')
        if reduction not in ('none', 'mean', 'sum'):
            raise ValueError(f"reduction must be 'none', 'mean' or 'sum', "
                             f'got {reduction!r}')
        self.tau = float(tau)
        self.label_smooth_val = float(label_smooth_val)
        self.reduction = reduction
        self.loss_weight = loss_weight
        self.class_prior = ClassPrior(class_counts, num_classes)

    def set_class_counts(self, class_counts) -> None:
        """Set the training counts [C] (called by ``ClassPriorHook``)."""
        self.class_prior.set_counts(class_counts)

    def forward(self,
                cls_score: torch.Tensor,
                label: torch.Tensor,
                weight: Optional[torch.Tensor] = None,
                avg_factor: Optional[float] = None,
                reduction_override: Optional[str] = None,
                **kwargs) -> torch.Tensor:
        """Loss of logits ``cls_score`` [N, C] against ``label``.

        Args:
            cls_score (Tensor): Logits [N, C].
            label (Tensor): Class indices [N] or soft targets [N, C].
            weight (Tensor, optional): Per-sample weights [N].
                Defaults to None.
            avg_factor (float, optional): Divisor of the summed loss
                (``'mean'`` only). Defaults to None.
            reduction_override (str, optional): Overrides ``reduction``.
                Defaults to None.

        Returns:
            Tensor: The reduced loss (a scalar unless ``'none'``).
        """
        num_classes = cls_score.size(-1)
        if label.dim() == 1:
            target = F.one_hot(label.long(), num_classes).to(cls_score)
        else:
            target = label.to(cls_score)
        if self.label_smooth_val:
            eps = self.label_smooth_val
            target = target * (1 - eps) + eps / num_classes
        logits = cls_score
        if self.tau:
            logits = logits + self.tau * self.class_prior.log_prior(
                cls_score.dtype)
        loss = -(target * logits.log_softmax(-1)).sum(-1)  # [N]
        if weight is not None:
            weight = weight.float()
        loss = weight_reduce_loss(
            loss,
            weight=weight,
            reduction=reduction_override or self.reduction,
            avg_factor=avg_factor)
        return self.loss_weight * loss


@MODELS.register_module()
class BalancedSoftmaxLoss(LogitAdjustedLoss):
    """Balanced softmax (Ren et al., NeurIPS 2020): ``LogitAdjustedLoss``
    with ``tau = 1``, i.e. cross-entropy on ``logits + log(n_c)``.

    Args:
        **kwargs: Every argument of :class:`LogitAdjustedLoss` but ``tau``.
    """

    def __init__(self, **kwargs):
        if 'tau' in kwargs:
            raise TypeError('BalancedSoftmaxLoss fixes tau = 1; use '
                            'LogitAdjustedLoss for another tau')
        super().__init__(tau=1.0, **kwargs)
