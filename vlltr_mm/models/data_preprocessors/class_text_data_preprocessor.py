"""Data preprocessor passing class-text tokens to the model."""
from typing import Sequence

import torch
from mmpretrain.models.utils.data_preprocessor import ClsDataPreprocessor
from mmpretrain.registry import MODELS


@MODELS.register_module()
class ClassTextDataPreprocessor(ClsDataPreprocessor):
    """:class:`ClsDataPreprocessor` that also delivers sentence tokens.

    Batches from :class:`~vlltr_mm.datasets.ClassTextDataset` carry
    ``'text_tokens'``: a ``[B, L]`` tensor with ``default_collate``, or a
    list of ``B`` ``[L]`` tensors with ``pseudo_collate``. They are stacked,
    cast to int64 and moved to the model's device as ``'texts'``, which
    MMEngine passes to the model as ``forward(..., texts=...)``. Images and
    labels are processed exactly as by the parent (normalisation, batch
    augments); a batch without tokens yields no ``'texts'`` key, so the same
    model runs on plain validation/test loaders. The sentences' corpus rows
    (``'text_index'``) are delivered as ``'text_indices'`` ``[B]``.

    Args:
        **kwargs: Arguments of :class:`ClsDataPreprocessor`.
    """

    def forward(self, data: dict, training: bool = False) -> dict:
        """Process images/labels as the parent, plus the tokens.

        Args:
            data (dict): A collated batch.
            training (bool): Whether batch augments are enabled.

        Returns:
            dict: ``inputs``, ``data_samples`` and, when the batch has
            tokens, ``texts`` (LongTensor ``[B, L]`` on the model device)
            and ``text_indices`` (LongTensor ``[B]``, the sentences' corpus
            rows).
        """
        texts = data.get('text_tokens')
        out = super().forward(data, training)
        if texts is not None:
            # ClassTextDataset gives every sample [L] tokens of one length.
            if isinstance(texts, Sequence):
                texts = torch.stack(list(texts))
            out['texts'] = self.cast_data(texts.long())
        indices = data.get('text_index')
        if indices is not None:
            # Corpus rows of the drawn sentences: lets a model look up
            # per-sentence caches (e.g. the CVLP teacher's text embeddings).
            out['text_indices'] = self.cast_data(
                torch.as_tensor(indices).long().reshape(-1))
        return out
