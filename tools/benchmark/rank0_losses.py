"""Rank 0 of W ranks in one process: the real contrastive losses with
simulated collectives, for ``bench_logits_memory.py``.

The losses call their collectives through ``self``
(``vlltr_mm.models.losses.class_wise_contrastive_loss.GlobalBatchLoss``);
the subclasses here override them, so no process group is needed and no
module global is patched.
"""
import torch
import torch.nn.functional as F

from vlltr_mm.models.losses import (
    ClassWiseContrastiveLoss,
    CLIPDistillationLoss,
)


class _GatherRank0(torch.autograd.Function):
    """All-gather as rank 0 sees it: its rows, then the others' (fixed).

    Backward copies the global gradient (the buffer gloo all-reduces) and
    returns this rank's slice.
    """

    @staticmethod
    def forward(ctx, x, others):
        ctx.rows = x.shape[0]
        return torch.cat([x, others])

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous().clone()[:ctx.rows], None


class Rank0Collectives:
    """The losses' collectives as rank 0 of ``world`` ranks sees them.

    A gather returns this rank's rows, then the other ranks' rows, which
    are constants given in the order the loss gathers: the losses gather
    what they were handed after normalising it, so the tensors cannot be
    recognised by identity. Mixed in before a loss class, it overrides the
    collectives the losses call through ``self``.

    Args:
        world (int): Number of ranks W.
        others (list): The other ranks' rows of each gathered tensor, in
            the loss's gather order (repeated every forward).
        **kwargs: Arguments of the loss.
    """

    def __init__(self, world, others, **kwargs):
        super().__init__(**kwargs)
        self.world, self.others, self.calls = world, list(others), 0

    def _next(self, x):
        theirs = self.others[self.calls % len(self.others)]
        self.calls += 1
        if theirs.shape[1:] != x.shape[1:]:
            raise RuntimeError('Rank0Collectives: gather order changed '
                               f'(got {tuple(x.shape)}, expected rows of '
                               f'{tuple(theirs.shape)})')
        return theirs.to(x.dtype)

    def gather_batch_sizes(self, batch_size, group=None):
        return [int(batch_size)] * self.world

    def gather_with_grad(self, x, sizes=None, group=None):
        return _GatherRank0.apply(x, self._next(x))

    def gather_no_grad(self, x, sizes=None, group=None):
        return torch.cat([x.detach(), self._next(x)])


class Rank0ContrastiveLoss(Rank0Collectives, ClassWiseContrastiveLoss):
    """``ClassWiseContrastiveLoss`` as rank 0 of ``world`` ranks."""


class Rank0DistillationLoss(Rank0Collectives, CLIPDistillationLoss):
    """``CLIPDistillationLoss`` as rank 0 of ``world`` ranks."""


def rank_loss(layout, world, mine, theirs, labels, theirs_labels,
              log_scale, label_smoothing=0.1, loss_lambda=0.5):
    """L_pre (Eq. 8) of rank 0 of ``world`` ranks, with the real losses.

    Args:
        layout (str): ``'local'``: the losses as they run on a rank,
            [B_local, B_global] logits (ours); ``'global'``: every
            embedding gathered once and the losses run on the whole batch,
            [B_global, B_global] logits on each rank (authors').
        world (int): Number of ranks W.
        mine (list[Tensor]): This rank's student image and text and
            teacher image and text embeddings, each [B_local, D].
        theirs (list[Tensor]): The other ranks' rows of the same four,
            each [B_global - B_local, D] (constants).
        labels (Tensor): This rank's labels [B_local].
        theirs_labels (Tensor): The other ranks' labels.
        log_scale (Tensor): Student log 1/τ (0-dim); the teacher's 1/τ is
            1/0.07.
        label_smoothing (float): Of the CCL loss. Defaults to 0.1.
        loss_lambda (float): λ of Eq. 8. Defaults to 0.5.

    Returns:
        Tensor: The 0-dim loss this rank back-propagates.
    """
    if layout == 'local':
        # Gather order: image, text (and labels; teacher image and text).
        ccl = Rank0ContrastiveLoss(world, [*theirs[:2], theirs_labels],
                                   label_smoothing=label_smoothing)
        distill = Rank0DistillationLoss(world, theirs)
    elif layout == 'global':
        ccl = ClassWiseContrastiveLoss(label_smoothing=label_smoothing)
        distill = CLIPDistillationLoss()
    else:
        raise ValueError(
            f"layout must be 'local' or 'global', got {layout!r}")

    def losses(img, txt, t_img, t_txt, lab):
        scale = log_scale.exp()
        return loss_lambda * ccl(img, txt, lab, scale) + (
            1 - loss_lambda) * distill(img, txt, t_img, t_txt, scale,
                                       1 / 0.07)

    if layout == 'local':
        return losses(*mine, labels)
    feats = [_GatherRank0.apply(a, b) for a, b in zip(mine, theirs)]
    return losses(*feats, torch.cat([labels, theirs_labels]))


def random_rank_inputs(world, local, dim, device='cpu', seed=0):
    """Unit-norm embeddings and labels of rank 0 and of the other ranks."""
    g = torch.Generator().manual_seed(seed)
    total = world * local

    def rows(n):
        return F.normalize(torch.randn(n, dim, generator=g), dim=-1).to(
            device)

    # The student's rows of this rank are leaves with gradients.
    mine = [rows(local).requires_grad_(i < 2) for i in range(4)]
    theirs = [rows(total - local) for _ in range(4)]
    labels = torch.randint(0, 1000, (total, ), generator=g).to(device)
    return mine, theirs, labels[:local], labels[local:]
