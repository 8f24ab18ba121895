"""A linear classification head with post-hoc logit adjustment (Menon et
al., ICLR 2021, Eq. 9).

MMPretrain's ``LinearClsHead`` predicts ``argmax(logits)``, which favours the
head classes when it was trained on long-tailed data. This subclass only
changes the prediction step: ``softmax(logits - tau * log(pi))``, with the
training-set prior ``pi`` kept in the head's state dict. Training is
unchanged (any loss; use ``LogitAdjustedLoss`` for the training-time
variant and leave ``posthoc_tau = 0``).
"""
from typing import Optional, Sequence

import torch
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS

from ..utils.class_prior import ClassPrior


@MODELS.register_module()
class LogitAdjustedLinearClsHead(LinearClsHead):
    """``LinearClsHead`` whose predictions are logit-adjusted.

    ``pred_score = softmax(logits - posthoc_tau * log(pi))`` [B, C];
    ``posthoc_tau = 0`` gives ``LinearClsHead``'s predictions exactly.

    Args:
        num_classes (int): Number of classes C.
        in_channels (int): Input feature size.
        posthoc_tau (float): Adjustment strength ``>= 0``, usually chosen on
            the val split. Defaults to 1.0.
        class_counts (Sequence[int], optional): Training images per class;
            None lets ``ClassPriorHook`` set them from the training dataset.
            Defaults to None.
        **kwargs: Other arguments of ``LinearClsHead`` (``loss``, ``topk``,
            ``init_cfg`` ...).
    """

    def __init__(self,
                 num_classes: int,
                 in_channels: int,
                 posthoc_tau: float = 1.0,
                 class_counts: Optional[Sequence[int]] = None,
                 **kwargs):
        super().__init__(num_classes, in_channels, **kwargs)
        if not posthoc_tau >= 0:
            raise ValueError(f'posthoc_tau must be >= 0, got {posthoc_tau}')
        self.posthoc_tau = float(posthoc_tau)
        self.class_prior = ClassPrior(class_counts, num_classes)

    def set_class_counts(self, class_counts) -> None:
        """Set the training counts [C] (called by ``ClassPriorHook``)."""
        self.class_prior.set_counts(class_counts)

    def _get_predictions(self, cls_score: torch.Tensor, data_samples):
        if self.posthoc_tau:
            cls_score = cls_score - self.posthoc_tau * (
                self.class_prior.log_prior(cls_score.dtype))
        return super()._get_predictions(cls_score, data_samples)
