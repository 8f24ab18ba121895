"""Storage of the LGR head's anchor sentence embeddings (VL-LTR §3.3).

The anchors are frozen text embeddings chosen by AnSS; they live in
persistent buffers of the head (so checkpoints carry them) together with the
statistics the efficient attention reuses (see :mod:`.lgr_attention`).
"""
import math
from typing import Optional, Union

import numpy as np
import torch

from .lgr_attention import anchor_statistics

_NO_ANCHORS = (
    'LGRHead has no anchor sentences. Run the LGR config with the '
    'AnchorSentenceSelectionHook (it selects them from the stage-1 model '
    'before training and stores them in the head), load a checkpoint that '
    'contains `head.anchors`, or call `LGRHead.set_anchors()`.')


class LGRAnchorStore:
    """Mixin of :class:`~.LGRHead`: anchor buffers, their validation and the
    cached anchor statistics.

    Buffers (created by :meth:`_init_anchors`): ``anchors`` [C, M, D] (raw,
    un-normalised text embeddings), ``anchor_mask`` [C, M] (True = valid)
    and ``anchors_set``. The host module provides ``num_classes``,
    ``num_anchors``, ``in_channels``, ``log_scale`` and ``attn_norm_k``.
    """

    def _init_anchors(self, num_classes: int, num_anchors: int,
                      dim: int) -> None:
        self.register_buffer('anchors',
                             torch.zeros(num_classes, num_anchors, dim))
        self.register_buffer(
            'anchor_mask',
            torch.ones(num_classes, num_anchors, dtype=torch.bool))
        self.register_buffer('anchors_set', torch.tensor(False))
        self._stats_key = None
        self._stats = None
        # Why the last state dict's anchors were refused (for the error).
        self._anchor_load_error = None

    @staticmethod
    def _check_scale(scale) -> float:
        scale = float(scale)
        if not (math.isfinite(scale) and scale > 0):
            raise ValueError(f'logit_scale must be a positive finite '
                             f'multiplier (e.g. exp of a CLIP logit_scale), '
                             f'got {scale}')
        return scale

    def _require_anchors(self) -> None:
        if not self.has_anchors:
            note = self._anchor_load_error
            raise RuntimeError(_NO_ANCHORS + (f' ({note})' if note else ''))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # A non-strict load (MMEngine's default) copies every tensor whose
        # shape fits and skips the rest, so `anchors_set` could load True
        # while `anchors` of another [C, M, D] stays zero: the head would
        # run on zero anchors. The flag is only kept with the anchors and
        # the mask it describes.
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        if prefix + 'anchors_set' not in state_dict:
            return
        fits = all(
            prefix + name in state_dict
            and tuple(state_dict[prefix + name].shape) == tuple(
                getattr(self, name).shape)
            for name in ('anchors', 'anchor_mask'))
        self._anchor_load_error = None
        if not fits and self.has_anchors:
            got = state_dict.get(prefix + 'anchors')
            got = 'none' if got is None else tuple(got.shape)
            self.anchors_set.fill_(False)
            self._anchor_load_error = (
                f'the loaded anchors have shape {got}, this head expects '
                f'(num_classes, num_anchors, in_channels) = '
                f'{tuple(self.anchors.shape)}; they were not loaded')

    @property
    def has_anchors(self) -> bool:
        """bool: Whether anchors were set or loaded from a checkpoint."""
        return bool(self.anchors_set)

    @torch.no_grad()
    def set_anchors(self,
                    anchors: Union[torch.Tensor, np.ndarray],
                    mask: Union[torch.Tensor, np.ndarray, None] = None,
                    logit_scale: Optional[float] = None) -> None:
        """Store the anchor sentence embeddings.

        Args:
            anchors (Tensor | ndarray): Raw text embeddings [C, M, D].
            mask (Tensor | ndarray, optional): Bool [C, M], True where the
                anchor is a real sentence. Every class needs at least one;
                rows marked False are zeroed and ignored by the attention.
                Defaults to None (all valid).
            logit_scale (float, optional): Text-branch multiplier ``s``
                (``exp`` of the stage-1 CLIP ``logit_scale``). Defaults to
                None (keep the current one).
        """
        expected = (self.num_classes, self.num_anchors, self.in_channels)
        if logit_scale is not None:
            logit_scale = self._check_scale(logit_scale)
        anchors = self._as_tensor(anchors, 'anchors')
        if tuple(anchors.shape) != expected:
            raise ValueError(
                f'anchors must have shape (num_classes, num_anchors, '
                f'in_channels) = {expected}, got {tuple(anchors.shape)}')
        if not anchors.is_floating_point():
            raise TypeError(f'anchors must be floating point, got '
                            f'{anchors.dtype}')
        if not torch.isfinite(anchors).all():
            raise ValueError('anchors contain NaN or Inf')
        if mask is None:
            mask = torch.ones(expected[:2], dtype=torch.bool)
        mask = self._as_tensor(mask, 'mask')
        if mask.dtype != torch.bool:
            raise TypeError(f'mask must be a bool tensor, got {mask.dtype}')
        if tuple(mask.shape) != expected[:2]:
            raise ValueError(f'mask must have shape (num_classes, '
                             f'num_anchors) = {expected[:2]}, got '
                             f'{tuple(mask.shape)}')
        empty = (~mask.any(dim=1)).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f'{len(empty)} classes have no valid anchor '
                             f'(first: {empty[:5]}); every class needs >= 1')
        mask = mask.to(self.anchor_mask.device)
        self.anchors.copy_(anchors)
        self.anchors.masked_fill_(~mask[..., None], 0)
        self.anchor_mask.copy_(mask)
        self.anchors_set.fill_(True)
        self._anchor_load_error = None
        if logit_scale is not None:
            self.log_scale.fill_(math.log(logit_scale))
        self._stats_key = self._stats = None

    @staticmethod
    def _as_tensor(value, name: str) -> torch.Tensor:
        if isinstance(value, np.ndarray):
            return torch.from_numpy(value)
        if not isinstance(value, torch.Tensor):
            raise TypeError(f'{name} must be a Tensor or ndarray, got '
                            f'{type(value).__name__}')
        return value

    def _anchor_stats(self) -> dict:
        # Derived from the frozen anchors; the key changes when they are
        # moved, cast, reloaded or edited in place, which forces a rebuild.
        key = (self.anchors.data_ptr(), self.anchors._version,
               self.anchors.dtype, self.anchors.device,
               self.attn_norm_k.eps)
        if key != self._stats_key:
            # Cached across steps: built in the anchors' own precision even
            # if the first forward runs under autocast (AMP), else a bf16
            # Gram would meet float32 operands later.
            with torch.autocast(self.anchors.device.type, enabled=False):
                self._stats = anchor_statistics(self.anchors,
                                                self.attn_norm_k.eps)
            self._stats_key = key
        return self._stats
