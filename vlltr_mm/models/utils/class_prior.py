"""The training-set class prior, as a module that travels with the weights.

Logit adjustment (Menon et al., ICLR 2021) and balanced softmax (Ren et al.,
NeurIPS 2020) need the label prior ``pi_c = n_c / sum(n)`` of the training
set. Keeping the counts in a persistent buffer puts them in every
checkpoint, so ``tools/test.py`` and ``ImageClassificationInferencer``
adjust predictions without access to the training data. The counts are set
from a config (``class_counts=[...]``) or, before the first iteration, by
:class:`~vlltr_mm.engine.hooks.ClassPriorHook` from the training dataset.
"""
import warnings
from typing import Optional, Sequence

import numpy as np
import torch
import torch.nn as nn

_UNSET = (
    'The class prior is not set. Add `dict(type=\'ClassPriorHook\')` to '
    '`custom_hooks` (it reads the per-class counts of the training dataset '
    'before the first iteration), give `class_counts=[...]` in the config, '
    'or load a checkpoint trained with either.')


def check_class_counts(counts, num_classes: Optional[int] = None,
                       name: str = 'class_counts') -> np.ndarray:
    """Validate per-class training counts.

    Args:
        counts (Sequence[int] | ndarray | Tensor): Images per class [C].
        num_classes (int, optional): Expected C. Defaults to None (any).
        name (str): Name used in error messages. Defaults to
            ``'class_counts'``.

    Returns:
        np.ndarray: The counts as int64 [C].
    """
    if isinstance(counts, torch.Tensor):
        counts = counts.detach().cpu().numpy()
    arr = np.asarray(counts)
    if (arr.ndim != 1 or arr.size == 0 or arr.dtype.kind not in 'iuf'
            or not np.all(np.isfinite(arr)) or np.any(arr < 0)
            or not np.all(arr == np.round(arr))):
        raise ValueError(f'{name} must be a non-empty 1-D list of '
                         f'non-negative integer training counts, got '
                         f'{counts!r}')
    if arr.sum() == 0:
        raise ValueError(f'{name} are all zero: no training images')
    if num_classes is not None and arr.size != num_classes:
        raise ValueError(f'{name} has {arr.size} entries but the model has '
                         f'{num_classes} classes')
    return arr.astype(np.int64)


class ClassPrior(nn.Module):
    """Per-class training counts ``n`` [C] and the log prior they define.

    The counts are a persistent int64 buffer ``counts`` (empty until set);
    loading a state dict takes the checkpoint's counts whatever their
    length, so a model built without counts loads them from its checkpoint.

    A class without training images would get ``log(0) = -inf``; its count
    is taken as 1 in :meth:`log_prior` (with a warning when set) so that
    adjusted logits stay finite.

    Args:
        class_counts (Sequence[int], optional): Training images per class.
            Given here, the counts are *explicit*: the hook leaves them
            alone. Defaults to None (set later).
        num_classes (int, optional): Expected number of classes, checked
            whenever counts are set. Defaults to None.
    """

    def __init__(self,
                 class_counts: Optional[Sequence[int]] = None,
                 num_classes: Optional[int] = None):
        super().__init__()
        self.num_classes = num_classes
        self.register_buffer('counts', torch.zeros(0, dtype=torch.int64))
        self.explicit = class_counts is not None
        if class_counts is not None:
            self.set_counts(class_counts)

    @property
    def is_set(self) -> bool:
        """bool: Whether counts were given, set or loaded."""
        return self.counts.numel() > 0

    @torch.no_grad()
    def set_counts(self, class_counts) -> None:
        """Store the per-class training counts [C] (validated)."""
        arr = check_class_counts(class_counts, self.num_classes)
        empty = np.flatnonzero(arr == 0)
        if empty.size:
            warnings.warn(f'{empty.size} classes have no training image '
                          f'(first: {empty[:5].tolist()}); their prior is '
                          'taken as one image')
        new = torch.from_numpy(arr).to(self.counts.device)
        if new.shape == self.counts.shape:
            # In place, so wrappers holding the buffer (DDP) see the values.
            self.counts.copy_(new)
        else:
            self.counts = new

    def log_prior(self, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """``log(pi)`` [C] on the buffer's device.

        Args:
            dtype (torch.dtype): Result dtype. Defaults to float32.
        """
        if not self.is_set:
            raise RuntimeError(_UNSET)
        counts = self.counts.clamp(min=1).to(torch.float64)
        return (counts / counts.sum()).log().to(dtype)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # The buffer's length is only known once counts exist; take the
        # checkpoint's shape so a non-strict load does not skip it. A
        # checkpoint with another number of classes is left to the usual
        # size-mismatch report (an error in torch, a warning in MMEngine's
        # non-strict load_from, as for the classifier weights).
        key = prefix + 'counts'
        if key in state_dict:
            loaded = state_dict[key]
            if self.num_classes is None or loaded.numel() in (
                    0, self.num_classes):
                self.counts = torch.zeros_like(
                    loaded, device=self.counts.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        if not self.is_set:
            return 'counts=unset'
        c = self.counts
        return (f'classes={c.numel()}, counts={int(c.min())}..'
                f'{int(c.max())}, explicit={self.explicit}')
