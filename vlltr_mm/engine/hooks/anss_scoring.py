r"""Anchor sentence selection (AnSS) scoring and selection, VL-LTR §3.3.

Every sentence ``t`` of class ``c`` is scored with the text side of the
class-wise contrastive loss (the :math:`\mathcal{L}_{lin}` term of Eq. 2)
evaluated against a fixed image pool :math:`I'`:

.. math::

    L_{lin}(t) = -\frac{1}{|I'_c|} \sum_{j \in I'_c}
        \log \frac{\exp(s \langle t, I_j \rangle)}
                   {\sum_{k \in I'} \exp(s \langle t, I_k \rangle)}
      = \operatorname{logsumexp}_{k \in I'} s \langle t, I_k \rangle
        - s \, \hat t \cdot \bar I_c,

where :math:`\langle\cdot,\cdot\rangle` is the cosine similarity,
:math:`s = 1/\tau` and :math:`\bar I_c` the mean of the L2-normalised
embeddings of the pool images of class ``c`` (the mean of the cosines is
the dot product with the mean of the unit vectors; it is *not* the cosine
to the mean). The M lowest-scoring sentences of each class become its
anchors.
"""
from typing import Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F

_SELECTION_MODES = ('anss', 'cutoff')
_POOL_MODES = ('first', 'random')


def _as_long_tensor(x, device) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        x = torch.from_numpy(np.ascontiguousarray(x))
    return torch.as_tensor(x, device=device).long()


def lin_loss_scores(text_embeds: torch.Tensor,
                    image_embeds: torch.Tensor,
                    sentence_labels,
                    image_labels,
                    logit_scale: float,
                    chunk_size: int = 4096) -> torch.Tensor:
    """Score sentences with the text-to-image loss L_lin (Eq. 2).

    The loss of sentence ``t`` of class ``c`` is the cross-entropy of the
    softmax of ``logit_scale * cos(t, I_k)`` over all pool images ``k``
    against the uniform target over the pool images of class ``c``. Lower
    is better.

    Sentences are processed in chunks, so besides the inputs the memory is
    ``O(chunk_size * P)``; the embeddings are L2-normalised inside, chunk
    by chunk (the caller's tensors are not copied as a whole). Half
    precision inputs are scored in float32.

    A class without any pool image has no defined loss: its sentences get
    ``+inf``, which :func:`select_anchors` resolves to the sentences' corpus
    order (the cut-off rule) for that class.

    Args:
        text_embeds (torch.Tensor): Sentence embeddings, shape [N, D], not
            necessarily normalised.
        image_embeds (torch.Tensor): Pool image embeddings, shape [P, D],
            not necessarily normalised.
        sentence_labels (torch.Tensor | np.ndarray): Class of each sentence,
            shape [N], integers in ``[0, C)``.
        image_labels (torch.Tensor | np.ndarray): Class of each pool image,
            shape [P], integers in ``[0, C)``.
        logit_scale (float): The similarity scale ``s = 1 / tau`` (already
            exponentiated, e.g. ``exp(stage-1 logit_scale)``).
        chunk_size (int): Number of sentences scored at once.
            Defaults to 4096.

    Returns:
        torch.Tensor: L_lin of every sentence, shape [N], float32, on the
        device of ``text_embeds``.
    """
    if text_embeds.dim() != 2 or image_embeds.dim() != 2:
        raise ValueError('text_embeds and image_embeds must be 2-D [N, D] '
                         f'and [P, D], got {tuple(text_embeds.shape)} and '
                         f'{tuple(image_embeds.shape)}')
    if text_embeds.shape[1] != image_embeds.shape[1]:
        raise ValueError('embedding sizes differ: text D='
                         f'{text_embeds.shape[1]}, image D='
                         f'{image_embeds.shape[1]}')
    if chunk_size < 1:
        raise ValueError(f'chunk_size must be >= 1, got {chunk_size}')
    device = text_embeds.device
    num_sentences = text_embeds.shape[0]
    sentence_labels = _as_long_tensor(sentence_labels, device)
    image_labels = _as_long_tensor(image_labels, device)
    if sentence_labels.shape != (num_sentences, ):
        raise ValueError(f'sentence_labels must have shape [{num_sentences}]'
                         f', got {tuple(sentence_labels.shape)}')
    if image_labels.shape != (image_embeds.shape[0], ):
        raise ValueError('image_labels must have shape '
                         f'[{image_embeds.shape[0]}], got '
                         f'{tuple(image_labels.shape)}')
    if image_labels.numel() == 0:
        raise ValueError('the image pool is empty')
    if num_sentences == 0:
        return torch.empty(0, device=device)
    if min(sentence_labels.min(), image_labels.min()) < 0:
        raise ValueError('labels must be non-negative')

    dtype = torch.promote_types(text_embeds.dtype, torch.float32)
    images = F.normalize(image_embeds.to(device, dtype), dim=1)
    num_classes = int(max(sentence_labels.max(), image_labels.max())) + 1
    # Mean of the unit image vectors per class: the mean of cosines of a
    # sentence to its class's images is its dot product with this vector.
    class_sum = images.new_zeros(num_classes, images.shape[1])
    class_sum.index_add_(0, image_labels, images)
    class_count = torch.bincount(image_labels, minlength=num_classes)
    # The scale is folded into the (small) image side once.
    scale = float(logit_scale)
    class_mean = class_sum * (
        scale / class_count.clamp(min=1).unsqueeze(1).to(dtype))
    images_t = (images.t() * scale).contiguous()
    del images, class_sum
    scores = torch.empty(num_sentences, device=device, dtype=dtype)
    for start in range(0, num_sentences, chunk_size):
        stop = min(start + chunk_size, num_sentences)
        text = F.normalize(text_embeds[start:stop].to(dtype), dim=1)
        logits = text @ images_t
        # In-place, max-shifted log-sum-exp: the [chunk, P] block is the
        # only large temporary.
        row_max = logits.amax(dim=1, keepdim=True)
        lse = logits.sub_(row_max).exp_().sum(dim=1).log_()
        lse += row_max.squeeze(1)
        positive = (text * class_mean[sentence_labels[start:stop]]).sum(1)
        scores[start:stop] = lse - positive
    empty_class = class_count[sentence_labels] == 0
    scores[empty_class] = float('inf')
    return scores.float()


def select_anchors(
        scores: Optional[torch.Tensor],
        class_offsets,
        num_anchors: int,
        mode: str = 'anss') -> Tuple[torch.Tensor, torch.Tensor]:
    """Pick ``num_anchors`` sentences per class.

    ``'anss'`` keeps the M lowest-scoring sentences of each class (ties and
    ``+inf`` scores keep corpus order, so a class whose sentences all score
    ``+inf`` falls back to its first M sentences); ``'cutoff'`` keeps the
    first M sentences of each class in corpus order (Table 4, #7), and
    ignores ``scores``.

    A class with fewer than M sentences gets all of them followed by
    padding: padded slots repeat the class's first chosen sentence and are
    ``False`` in the mask, so they carry a valid embedding but must be
    excluded by the consumer (the LGR head masks them in its softmax).

    Args:
        scores (torch.Tensor, optional): Per-sentence score, shape [N]
            (lower is better). Required for ``'anss'``.
        class_offsets (torch.Tensor | np.ndarray): Shape [C + 1]; class
            ``c`` owns sentences ``class_offsets[c]:class_offsets[c + 1]``.
        num_anchors (int): M, anchors per class.
        mode (str): ``'anss'`` or ``'cutoff'``. Defaults to ``'anss'``.

    Returns:
        tuple[torch.Tensor, torch.Tensor]: ``indices`` [C, M] long (global
        sentence indices, best first for ``'anss'``) and ``mask`` [C, M]
        bool (True for a real sentence), both on CPU.
    """
    if mode not in _SELECTION_MODES:
        raise ValueError(f'mode must be one of {_SELECTION_MODES}, got '
                         f'{mode!r}')
    if num_anchors < 1:
        raise ValueError(f'num_anchors must be >= 1, got {num_anchors}')
    offsets = _as_long_tensor(class_offsets, 'cpu')
    if offsets.dim() != 1 or offsets.numel() < 2:
        raise ValueError('class_offsets must have shape [C + 1] with C >= 1')
    counts = offsets.diff()
    if (counts < 0).any() or offsets[0] != 0:
        raise ValueError('class_offsets must start at 0 and be '
                         'non-decreasing')
    if (counts == 0).any():
        empty = torch.nonzero(counts == 0).flatten().tolist()
        raise ValueError(f'classes {empty[:10]} have no sentence; every '
                         'class needs at least one to get anchors')
    num_sentences = int(offsets[-1])
    num_classes = counts.numel()
    max_count = int(counts.max())
    width = max(max_count, num_anchors)
    cols = torch.arange(width)
    valid = cols.unsqueeze(0) < counts.unsqueeze(1)

    if mode == 'anss':
        if scores is None:
            raise ValueError("mode='anss' needs scores")
        scores = scores.detach().float().cpu()
        if scores.shape != (num_sentences, ):
            raise ValueError(f'scores must have shape [{num_sentences}] '
                             f'(class_offsets[-1]), got '
                             f'{tuple(scores.shape)}')
        if torch.isnan(scores).any():
            raise ValueError('scores contain NaN')
        flat = (offsets[:-1].unsqueeze(1) + cols).clamp(max=num_sentences - 1)
        padded = torch.where(valid, scores[flat],
                             torch.full((), float('inf')))
        # Stable sort: equal scores (including +inf of classes without pool
        # images) keep corpus order, and padding (after every real entry
        # of its row) sorts last.
        order = torch.sort(padded, dim=1, stable=True).indices
    else:
        order = cols.expand(num_classes, width)
    order = order[:, :num_anchors]
    mask = order < counts.unsqueeze(1)
    order = torch.where(mask, order, order[:, :1])
    indices = offsets[:-1].unsqueeze(1) + order
    return indices, mask


def select_pool(labels,
                max_per_class: Optional[int],
                mode: str = 'first',
                seed: int = 0) -> np.ndarray:
    """Pick the AnSS image pool: at most K images per class from a split.

    Args:
        labels (np.ndarray): Label of every image of the split, shape [n].
        max_per_class (int, optional): K; None keeps the whole split.
        mode (str): ``'first'`` keeps each class's first K images in split
            order (the authors' iNat subset), ``'random'`` a seeded uniform
            subset of K. Defaults to ``'first'``.
        seed (int): Seed of ``'random'``. Defaults to 0.

    Returns:
        np.ndarray: Ascending int64 indices into the split.
    """
    if mode not in _POOL_MODES:
        raise ValueError(f'pool mode must be one of {_POOL_MODES}, got '
                         f'{mode!r}')
    labels = np.asarray(labels, dtype=np.int64)
    if max_per_class is None:
        return np.arange(len(labels), dtype=np.int64)
    if max_per_class < 1:
        raise ValueError(f'max_per_class must be >= 1 or None, got '
                         f'{max_per_class}')
    order = np.arange(len(labels)) if mode == 'first' else \
        np.random.default_rng(seed).permutation(len(labels))
    by_class = np.argsort(labels[order], kind='stable')
    grouped = labels[order][by_class]
    # Position of each image within its class, in ``order``.
    rank = np.arange(len(grouped)) - np.searchsorted(grouped, grouped)
    return np.sort(order[by_class[rank < max_per_class]]).astype(np.int64)
