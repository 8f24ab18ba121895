"""Exact, memory-light form of the LGR text branch (VL-LTR Eqs. 5-7).

With frozen anchors ``V`` [C, M, D] and their row-normalised form
``n = (V - mu) / sigma`` (LayerNorm statistics, fixed per anchor):

* ``Q K^T = (h . n) + shift`` where ``h = (Q W_k) * gamma_k`` [B, D] and
  ``shift = (Q W_k) . beta_k + Q . b_k`` [B] is one number per image;
  ``h . n = (h . V - sum(h) * mu) / sigma``, so one [2B, D] x [D, C*M]
  product with ``V`` gives both ``h . V`` and ``x . V``;
* ``x . G = sum_m a_m (x . V_m)`` and ``|G|^2 = a^T (V V^T) a`` with the
  fixed per-class Gram matrix [C, M, M].

``detach_norm=True`` divides by a detached ``|G|``, the normalisation of
the authors' iNaturalist LGR models (``v_detach``); see
:class:`~.LGRHead`'s ``detach_text_norm``. The values are unchanged, the
gradient no longer flows through ``|G|`` (and the backward skips the Gram
term).

Neither ``K`` [C, M, D] nor ``G`` [B, C, D] is formed: activations are
[B, C, M] and the cost is O(B * C * M * D). A hand-written backward keeps
only the attention and ``x . V`` (2 * B * C * M numbers) for the backward
pass; other temporaries live for one class chunk.
"""
import math
from typing import Optional

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.autograd.function import once_differentiable


def direct_cosine(x: torch.Tensor,
                  query: torch.Tensor,
                  anchors: torch.Tensor,
                  mask: torch.Tensor,
                  proj_k: nn.Linear,
                  norm_k: nn.LayerNorm,
                  detach_norm: bool = False) -> torch.Tensor:
    """Eqs. 5-7 computed literally, forming ``K`` and ``G``: the reference
    the efficient form is checked against by the tests and benchmarks
    (a head whose ``text_cosine`` calls this), never used in training.

    Args:
        x (Tensor): Image embeddings ``E^I`` [B, D].
        query (Tensor): Queries ``Q`` [B, D] (Eq. 4).
        anchors (Tensor): Raw anchors ``V`` [C, M, D].
        mask (Tensor): Bool [C, M], True = valid anchor.
        proj_k (nn.Linear): Key projection.
        norm_k (nn.LayerNorm): Key LayerNorm.
        detach_norm (bool): Divide ``G`` by its detached norm (the
            authors' ``v_detach``). Defaults to False.

    Returns:
        Tensor: ``cos(E^I, G)`` [B, C].
    """
    keys = proj_k(norm_k(anchors))  # Eq. 5
    attn = torch.einsum('bd,cmd->bcm', query, keys)
    attn = attn / math.sqrt(anchors.size(-1))
    attn = attn.masked_fill(~mask, float('-inf'))
    gathered = torch.einsum('bcm,cmd->bcd', attn.softmax(-1),
                            anchors)  # Eq. 6
    if detach_norm:
        # The same floor as F.normalize, so only the gradient differs.
        norm = gathered.norm(dim=-1, keepdim=True).clamp_min(1e-12)
        gathered = gathered / norm.detach()
    else:
        gathered = F.normalize(gathered, dim=-1)
    return torch.einsum('bd,bcd->bc', F.normalize(x, dim=-1), gathered)


@torch.no_grad()
def anchor_statistics(anchors: torch.Tensor, eps: float) -> dict:
    """Quantities of the frozen anchors reused by every forward pass.

    Args:
        anchors (Tensor): Raw anchor embeddings ``V`` [C, M, D].
        eps (float): The key LayerNorm's epsilon.

    Returns:
        dict: ``scale`` [C, M] = 1 / (sigma * sqrt(D)) (folds the
        1 / sqrt(D) of Eq. 6), ``offset`` [C, M] = mu * scale and ``gram``
        [C, M, M] = V V^T.
    """
    var, mean = torch.var_mean(anchors, dim=-1, correction=0)
    scale = torch.rsqrt(var + eps) / math.sqrt(anchors.size(-1))
    gram = torch.bmm(anchors, anchors.transpose(1, 2))
    return dict(scale=scale, offset=mean * scale, gram=gram)


class _AnchorAttention(torch.autograd.Function):
    """(h, x, shift) -> (x . G [B, C], |G|^2 [B, C]) over class chunks."""

    @staticmethod
    def forward(ctx, h, x, shift, anchors, mask, scale, offset, gram, chunk,
                keep):
        num, dim = x.shape
        num_classes, num_anchors = mask.shape
        hx = torch.cat([h, x])
        h_sum = h.sum(-1)[:, None, None]
        shift = (shift / math.sqrt(dim))[:, None, None]
        dot = x.new_empty(num, num_classes)
        sq_norm = x.new_empty(num, num_classes)
        saved = []
        for s in range(0, num_classes, chunk):
            e = min(s + chunk, num_classes)
            values = anchors[s:e].reshape(-1, dim)
            # One buffer: [0] becomes the attention a, [1] is x . V.
            proj = torch.mm(hx, values.T).view(2, num, e - s, num_anchors)
            attn, xv = proj[0], proj[1]
            attn.mul_(scale[s:e]).addcmul_(h_sum, offset[s:e], value=-1)
            attn.add_(shift).masked_fill_(~mask[s:e], float('-inf'))
            # In-place softmax over M; every class has a valid anchor, so
            # the row max is finite.
            attn.sub_(attn.amax(-1, keepdim=True)).exp_()
            attn.div_(attn.sum(-1, keepdim=True))
            dot[:, s:e] = (attn * xv).sum(-1)
            attn_gram = torch.bmm(attn.transpose(0, 1), gram[s:e])
            sq_norm[:, s:e] = (attn_gram.transpose(0, 1) * attn).sum(-1)
            if keep:
                saved.append(proj)
        ctx.proj = saved
        ctx.chunk = chunk
        # An unused output (|G|^2 behind a detached norm) then arrives as
        # None in backward, which skips its Gram product.
        ctx.set_materialize_grads(False)
        ctx.save_for_backward(anchors, mask, scale, offset, gram)
        return dot, sq_norm

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_dot, grad_sq):
        anchors, mask, scale, offset, gram = ctx.saved_tensors
        num_classes, num_anchors, dim = anchors.shape
        if grad_dot is None and grad_sq is None:
            return (None, ) * 10
        if grad_dot is None:
            grad_dot = torch.zeros_like(grad_sq)
        num = grad_dot.size(0)
        grad_hx = grad_dot.new_zeros(2 * num, dim)
        grad_hsum = grad_dot.new_zeros(num)
        grad_shift = grad_dot.new_zeros(num)
        for i, s in enumerate(range(0, num_classes, ctx.chunk)):
            e = min(s + ctx.chunk, num_classes)
            proj = ctx.proj[i]
            attn, xv = proj[0], proj[1]
            g_dot = grad_dot[:, s:e, None]
            # dL/da = g_dot * (x . V) + 2 * g_sq * (a V V^T)
            if grad_sq is None:
                grad_attn = xv * g_dot
            else:
                grad_attn = torch.bmm(attn.transpose(0, 1), gram[s:e])
                grad_attn = grad_attn.transpose(0, 1)
                grad_attn.mul_(2 * grad_sq[:, s:e, None]).addcmul_(
                    g_dot, xv)
            # Softmax backward: a * (g - sum_m a g); masked a are 0.
            inner = (attn * grad_attn).sum(-1, keepdim=True)
            grad_logit = grad_attn.sub_(inner).mul_(attn)
            grad_hsum -= torch.einsum('bcm,cm->b', grad_logit, offset[s:e])
            grad_shift += grad_logit.sum((1, 2))
            # d(h . V) and d(x . V) side by side: one product with V.
            grad_proj = torch.empty_like(proj)
            torch.mul(grad_logit, scale[s:e], out=grad_proj[0])
            torch.mul(attn, g_dot, out=grad_proj[1])
            grad_hx.addmm_(
                grad_proj.view(2 * num, -1), anchors[s:e].reshape(-1, dim))
        grad_h = grad_hx[:num] + grad_hsum[:, None]
        grad_shift = grad_shift / math.sqrt(dim)
        return (grad_h, grad_hx[num:], grad_shift) + (None, ) * 7


def efficient_cosine(x: torch.Tensor,
                     h: torch.Tensor,
                     shift: torch.Tensor,
                     anchors: torch.Tensor,
                     mask: torch.Tensor,
                     stats: dict,
                     class_chunk: Optional[int] = None,
                     eps: float = 1e-12,
                     detach_norm: bool = False) -> torch.Tensor:
    """``cos(E^I, G)`` of Eqs. 6-7 without forming ``K`` or ``G``.

    Runs in the anchors' dtype with autocast off, since ``|G|^2`` comes
    from a quadratic form that half precision would round badly.

    Args:
        x (Tensor): Image embeddings ``E^I`` [B, D].
        h (Tensor): ``(Q W_k) * gamma_k`` [B, D].
        shift (Tensor): ``(Q W_k) . beta_k + Q . b_k`` [B].
        anchors (Tensor): ``V`` [C, M, D], zero where ``mask`` is False.
        mask (Tensor): Bool [C, M], True for valid anchors.
        stats (dict): :func:`anchor_statistics` of ``anchors``.
        class_chunk (int, optional): Classes per chunk. Defaults to None
            (all at once).
        eps (float): Norm floor, as in ``F.normalize``. Defaults to 1e-12.
        detach_norm (bool): Divide by a detached ``|G|`` (the authors'
            ``v_detach``). Defaults to False.

    Returns:
        Tensor: Cosine similarities [B, C].
    """
    dtype = anchors.dtype
    chunk = class_chunk or anchors.size(0)
    # Keep buffers for backward only when a backward can follow.
    keep = torch.is_grad_enabled() and any(
        t.requires_grad for t in (x, h, shift))
    with torch.autocast(x.device.type, enabled=False):
        x = x.to(dtype)
        dot, sq_norm = _AnchorAttention.apply(h.to(dtype), x,
                                              shift.to(dtype), anchors, mask,
                                              stats['scale'], stats['offset'],
                                              stats['gram'], chunk, keep)
        x_norm = x.norm(dim=-1, keepdim=True).clamp_min(eps)
        g_norm = sq_norm.clamp_min(eps * eps).sqrt()
        if detach_norm:
            g_norm = g_norm.detach()
        return dot / (x_norm * g_norm)


def keyed_efficient_cosine(x: torch.Tensor, query: torch.Tensor,
                           proj_k: nn.Linear, norm_k: nn.LayerNorm,
                           anchors: torch.Tensor, mask: torch.Tensor,
                           stats: dict,
                           class_chunk: Optional[int] = None,
                           detach_norm: bool = False) -> torch.Tensor:
    """:func:`efficient_cosine` from the key projection and LayerNorm: the
    efficient counterpart of :func:`direct_cosine` (same arguments plus the
    cached :func:`anchor_statistics` and the class chunk).

    Returns:
        Tensor: ``cos(E^I, G)`` [B, C].
    """
    # Q K^T = ((Q W_k) * gamma_k) n^T + (Q W_k) beta_k + Q b_k with n the
    # fixed row-normalised anchors; the last two terms are one number per
    # image, which softmax over M cancels, but they stay in the graph so
    # every parameter gets the direct form's gradient.
    u = query @ proj_k.weight
    shift = u @ norm_k.bias
    if proj_k.bias is not None:
        shift = shift + query @ proj_k.bias
    return efficient_cosine(x, u * norm_k.weight, shift, anchors, mask,
                            stats, class_chunk, detach_norm=detach_norm)
