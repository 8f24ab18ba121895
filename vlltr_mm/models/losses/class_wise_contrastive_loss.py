"""Class-wise contrastive (CCL) loss of VL-LTR, Eq. 2."""
from numbers import Number
from typing import List, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch import Tensor

from ...utils.distributed import (
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
)


def as_scalar(value: Union[Tensor, Number], ref: Tensor) -> Tensor:
    """``value`` as a 0-dim tensor of ``ref``'s dtype and device (keeps
    autograd)."""
    if isinstance(value, Tensor):
        return value.to(device=ref.device, dtype=ref.dtype).reshape(())
    return torch.tensor(float(value), dtype=ref.dtype, device=ref.device)


def full_precision(*tensors: Tensor) -> Tuple[Tensor, ...]:
    """``tensors`` in their common dtype promoted to at least float32.

    Float32 (or float64) inputs are returned as they are, not copied.
    """
    dtype = torch.float32
    for x in tensors:
        dtype = torch.promote_types(dtype, x.dtype)
    return tuple(x.to(dtype) for x in tensors)


class GlobalBatchLoss(nn.Module):
    """Base of the losses that compare local rows with the global batch.

    **Precision.** The losses normalise the embeddings, form the logits and
    take their softmax in float32 whatever dtype the towers hand them, with
    autocast off for that region (:meth:`float32_region`): under bf16 or
    fp16 autocast the matmul would round logits of size up to
    ``logit_scale`` (100 for CLIP) to 8 or 11 significant bits, and the
    softmax turns that into a relative gradient error of up to
    ``logit_scale * u`` (11-15 % measured in bf16 at B=256, D=1024). The
    loss is float32 (float64 for float64 inputs); autograd casts the
    embeddings' gradients back to their own dtype.

    **Collectives.** They are class attributes, called through ``self``,
    so that a one-process benchmark can play one rank of many by
    overriding them in a subclass
    (``tools/benchmark/bench_logits_memory.py``); training uses the
    :mod:`vlltr_mm.utils.distributed` ones.
    """

    gather_batch_sizes = staticmethod(gather_batch_sizes)
    gather_with_grad = staticmethod(gather_with_grad)
    gather_no_grad = staticmethod(gather_no_grad)

    @staticmethod
    def float32_region(ref: Tensor):
        """Context with autocast off on ``ref``'s device.

        Upcasting alone is not enough: autocast would cast the float32
        operands of the matmul back down.
        """
        return torch.autocast(ref.device.type, enabled=False)

    def local_global_logits(self, image_embeds: Tensor, text_embeds: Tensor,
                            logit_scale: Union[Tensor, Number],
                            sizes: List[int]) -> Tuple[Tensor, Tensor]:
        """Logits of the local rows against the global batch, both ways.

        Only the [B_local, B_global] slices this rank owns are built, never
        the [B_global, B_global] square; the gathered side carries
        gradients back to the rank it came from (see
        :func:`~vlltr_mm.utils.distributed.gather_with_grad`). The
        embeddings are upcast and normalised before the gather, so the
        gradients of other ranks are summed in float32 too. Call inside
        :meth:`float32_region`.

        Args:
            image_embeds (Tensor): Local image embeddings, [B_local, D],
                any float dtype, normalised here.
            text_embeds (Tensor): Local text embeddings, [B_local, D],
                normalised here.
            logit_scale (Tensor | float): 0-dim, ``1 / tau``.
            sizes (List[int]): Every rank's B_local.

        Returns:
            Tuple[Tensor, Tensor]: ``logits_per_image`` [B_local, B_global]
            (``scale * S_ij`` for local image i, global text j) and
            ``logits_per_text`` [B_local, B_global] (``scale * S_ji`` for
            local text i, global image j), float32 or wider.
        """
        # Normalised before the gather: the [B_global, D] sides are then
        # gathered once and never copied.
        img, txt = (F.normalize(x, dim=-1)
                    for x in full_precision(image_embeds, text_embeds))
        all_img = self.gather_with_grad(img, sizes)
        all_txt = self.gather_with_grad(txt, sizes)
        logit_scale = as_scalar(logit_scale, img)
        logits_per_image = logit_scale * img @ all_txt.t()
        logits_per_text = logit_scale * txt @ all_img.t()
        return logits_per_image, logits_per_text


@MODELS.register_module()
class ClassWiseContrastiveLoss(GlobalBatchLoss):
    """Class-wise contrastive loss (VL-LTR Eq. 2).

    Image i and text j are a positive pair when their labels are equal.
    For each image the target over the texts of the global batch is
    uniform over its positives (``mask / |mask|``), optionally
    label-smoothed: ``(1 - eps) * mask / |mask| + eps / B_global``; the
    image-side loss ``L_vis`` is the cross-entropy of the row softmax of
    ``logit_scale * S`` against that target. The text side ``L_lin`` is
    the same over columns (each text against all images). Without
    smoothing this is exactly the mean over positives of ``-log softmax``
    in Eq. 2.

    Computed: ``loss_weight * (mean_i L_vis(i) + mean_i L_lin(i)) / 2``
    with means over the global batch, as the authors' code does
    (``sum_directions=False``); Eq. 2 as printed adds the two directions
    (``sum_directions=True``), which only doubles the loss.

    Under data parallelism each rank returns ``world_size / B_global``
    times the sum of its local row losses, so the mean over ranks (what
    DDP's gradient averaging optimises) is the global-batch loss for any
    number of ranks and any split of the batch.

    Args:
        label_smoothing (float): ``eps`` above; the authors use 0.1.
            Defaults to 0.0.
        sum_directions (bool): Add ``L_vis`` and ``L_lin`` as Eq. 2 is
            printed instead of averaging them. Defaults to False.
        loss_weight (float): Multiplier of the loss. Defaults to 1.0.
    """

    def __init__(self,
                 label_smoothing: float = 0.0,
                 sum_directions: bool = False,
                 loss_weight: float = 1.0):
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError('label_smoothing must be in [0, 1), got '
                             f'{label_smoothing}.')
        self.label_smoothing = float(label_smoothing)
        self.sum_directions = sum_directions
        self.loss_weight = loss_weight

    def forward(self, image_embeds: Tensor, text_embeds: Tensor,
                labels: Tensor, logit_scale: Union[Tensor,
                                                   float]) -> Tensor:
        """Compute the loss of this rank's rows.

        Args:
            image_embeds (Tensor): Image embeddings, [B_local, D], any
                float dtype; L2-normalised here in float32 (unit inputs
                are fine).
            text_embeds (Tensor): Embeddings of the sentence drawn for
                each image, [B_local, D]; normalised here.
            labels (Tensor): Class index of each pair, [B_local], integer.
                Shapes are not checked per batch: ``CVLP`` builds all three
                from one batch.
            logit_scale (Tensor | float): Scalar ``1 / tau``, already
                exponentiated; gradients flow into it.

        Returns:
            Tensor: 0-dim float32 loss (float64 for float64 inputs).
        """
        with self.float32_region(image_embeds):
            return self._loss(image_embeds, text_embeds, labels,
                              logit_scale)

    def _loss(self, image_embeds: Tensor, text_embeds: Tensor,
              labels: Tensor, logit_scale: Union[Tensor, float]) -> Tensor:
        sizes = self.gather_batch_sizes(labels.shape[0])
        logits_per_image, logits_per_text = self.local_global_logits(
            image_embeds, text_embeds, logit_scale, sizes)
        all_labels = self.gather_no_grad(labels, sizes)

        # Label equality is symmetric, so one mask serves both directions:
        # texts of image i's class, and images of text i's class.
        positives = labels[:, None] == all_labels[None, :]
        target = positives.to(logits_per_image.dtype)
        # Never empty: every sample is its own positive.
        target = target / target.sum(dim=1, keepdim=True)
        if self.label_smoothing > 0:
            eps = self.label_smoothing
            target = (1 - eps) * target + eps / target.shape[1]

        loss_vis = -(target * F.log_softmax(logits_per_image, dim=1)).sum()
        loss_lin = -(target * F.log_softmax(logits_per_text, dim=1)).sum()
        # Sum of local rows scaled so that the mean over ranks is the mean
        # over the global batch, whatever the per-rank sizes.
        share = len(sizes) / sum(sizes)
        loss = (loss_vis + loss_lin) * share
        if not self.sum_directions:
            loss = loss / 2
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return (f'label_smoothing={self.label_smoothing}, '
                f'sum_directions={self.sum_directions}, '
                f'loss_weight={self.loss_weight}')
