"""Distillation from a frozen CLIP teacher, VL-LTR Eq. 3."""
from typing import Union

import torch
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from .class_wise_contrastive_loss import (
    GlobalBatchLoss,
    as_scalar,
    full_precision,
)


@MODELS.register_module()
class CLIPDistillationLoss(GlobalBatchLoss):
    """Soft cross-entropy to a frozen CLIP's similarities (VL-LTR Eq. 3).

    Eq. 3 weights the student's ``log softmax`` of the diagonal pair by the
    teacher's softmax of the same pair; the authors' code (followed here)
    uses the teacher's whole softmax row as the target: for local image i,
    ``-sum_j softmax(t * S'_i.)_j * log_softmax(s * S_i.)_j`` over the
    texts j of the global batch, and likewise for each local text against
    all images (columns of S and S'). ``s`` is the student's
    ``logit_scale``, ``t`` the teacher's; there is no extra temperature.

    Computed: ``loss_weight * (mean_i L_img(i) + mean_i L_txt(i)) / 2``
    with means over the global batch (``sum_directions=True`` adds the two
    directions instead, as Eq. 3 is printed). The teacher's inputs are
    constants: they are gathered without gradients and never receive any.
    Per-rank scaling matches :class:`ClassWiseContrastiveLoss`: the mean
    over ranks equals the global-batch loss.

    Args:
        sum_directions (bool): Add the two directions instead of averaging
            them. Defaults to False.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self, sum_directions: bool = False, loss_weight: float = 1.0):
        super().__init__()
        self.sum_directions = sum_directions
        self.loss_weight = loss_weight

    def forward(self, image_embeds: Tensor, text_embeds: Tensor,
                teacher_image_embeds: Tensor, teacher_text_embeds: Tensor,
                logit_scale: Union[Tensor, float],
                teacher_logit_scale: Union[Tensor, float]) -> Tensor:
        """Compute the loss of this rank's rows.

        Args:
            image_embeds (Tensor): Student's image embeddings,
                [B_local, D], any float dtype; L2-normalised here in
                float32 (unit inputs are fine).
            text_embeds (Tensor): Student's text embeddings, [B_local, D];
                normalised here.
            teacher_image_embeds (Tensor): Teacher's L2-normalised image
                embeddings of the same images, [B_local, D_t].
            teacher_text_embeds (Tensor): Teacher's L2-normalised text
                embeddings of the same sentences, [B_local, D_t].
            logit_scale (Tensor | float): Student's scalar ``1 / tau``,
                already exponentiated; gradients flow into it.
            teacher_logit_scale (Tensor | float): Teacher's scalar
                ``1 / tau``, already exponentiated; treated as a constant.

        Returns:
            Tensor: 0-dim float32 loss (float64 for float64 inputs).
        """
        with self.float32_region(image_embeds):
            return self._loss(image_embeds, text_embeds,
                              teacher_image_embeds, teacher_text_embeds,
                              logit_scale, teacher_logit_scale)

    def _loss(self, image_embeds: Tensor, text_embeds: Tensor,
              teacher_image_embeds: Tensor, teacher_text_embeds: Tensor,
              logit_scale: Union[Tensor, float],
              teacher_logit_scale: Union[Tensor, float]) -> Tensor:
        sizes = self.gather_batch_sizes(image_embeds.shape[0])
        logits_per_image, logits_per_text = self.local_global_logits(
            image_embeds, text_embeds, logit_scale, sizes)
        with torch.no_grad():
            # A half-precision teacher still gets a float32 softmax.
            t_image, t_text = full_precision(teacher_image_embeds.detach(),
                                             teacher_text_embeds.detach())
            t_scale = as_scalar(teacher_logit_scale, t_image).detach()
            all_t_image = self.gather_no_grad(t_image, sizes)
            all_t_text = self.gather_no_grad(t_text, sizes)
            target_per_image = F.softmax(
                t_scale * t_image @ all_t_text.t(), dim=1)
            target_per_text = F.softmax(
                t_scale * t_text @ all_t_image.t(), dim=1)

        loss_img = -(target_per_image *
                     F.log_softmax(logits_per_image, dim=1)).sum()
        loss_txt = -(target_per_text *
                     F.log_softmax(logits_per_text, dim=1)).sum()
        share = len(sizes) / sum(sizes)
        loss = (loss_img + loss_txt) * share
        if not self.sum_directions:
            loss = loss / 2
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'sum_directions={self.sum_directions}, '
                f'loss_weight={self.loss_weight}')
