"""Embed every sentence of a class-text corpus, sharded over ranks.

Both consumers of whole-corpus text embeddings use this one routine: the
CLIP teacher's sentence cache (:class:`~.CLIPTeacher`, Eq. 3) and anchor
sentence selection (``AnchorSentenceSelectionHook``, §3.3). It lives in
``models`` beside the teacher so that the hook (``engine``) imports it
downward, as it imports every other model part.

Rank ``r`` of ``w`` embeds one contiguous block of rows
(:func:`rank_shard`), and the blocks are concatenated in rank order with
:func:`~vlltr_mm.utils.distributed.gather_no_grad`, so the result is in
corpus order on every rank without any re-indexing. Progress (with ETA)
shows on rank 0 with the corpus builder's
:class:`~vlltr_mm.datasets.class_text.corpus_build.RankZeroProgress`.
"""
from typing import Callable, List, Tuple

import numpy as np
import torch
from mmengine.dist import get_dist_info

from vlltr_mm.datasets.class_text.corpus_build import RankZeroProgress
from vlltr_mm.utils.distributed import gather_no_grad


def rank_shard(num_rows: int) -> Tuple[np.ndarray, List[int]]:
    """This rank's contiguous block of ``range(num_rows)``.

    Args:
        num_rows (int): Total number of rows.

    Returns:
        tuple[np.ndarray, list[int]]: This rank's row indices (int64,
        ascending) and every rank's block size, in rank order (the
        ``sizes`` argument of :func:`gather_no_grad`).
    """
    rank, world = get_dist_info()
    blocks = np.array_split(np.arange(num_rows, dtype=np.int64), world)
    return blocks[rank], [len(b) for b in blocks]


@torch.no_grad()
def embed_corpus(encode: Callable[[torch.Tensor], torch.Tensor],
                 corpus,
                 dim: int,
                 device: torch.device,
                 batch_size: int = 256,
                 title: str = 'Embedding the corpus') -> torch.Tensor:
    """Embed all ``N`` corpus sentences, split over ranks and gathered.

    Collective: every rank must call it with the same corpus.

    Args:
        encode (Callable): Token ids ``[n, L]`` (on ``device``) to
            embeddings ``[n, D]``.
        corpus (ClassTextCorpus): Provides ``num_sentences`` and
            ``get_tokens(indices)``.
        dim (int): ``D``; needed by a rank whose block is empty.
        device (torch.device): Where tokens are sent and rows gathered
            (a CUDA device under NCCL).
        batch_size (int): Sentences per ``encode`` call. Defaults to 256.
        title (str): Line above the rank-0 progress bar (with ETA).
            Defaults to ``'Embedding the corpus'``.

    Returns:
        torch.Tensor: ``[N, D]`` float32 on ``device``, in corpus order,
        identical on every rank; no autograd graph.
    """
    ids, sizes = rank_shard(corpus.num_sentences)
    progress = RankZeroProgress(len(ids), title)
    parts = []
    for start in range(0, len(ids), batch_size):
        chunk = ids[start:start + batch_size]
        parts.append(encode(corpus.get_tokens(chunk).to(device)).float())
        progress.update(len(chunk))
    progress.close()
    local = torch.cat(parts) if parts else torch.zeros(
        0, dim, device=device)
    return gather_no_grad(local, sizes)
