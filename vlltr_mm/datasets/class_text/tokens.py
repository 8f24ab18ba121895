"""Tokenisation of the class-text corpus into a flat int32 store.

Training reads one sentence per image per iteration, so tokens are kept as
one flat ``int32`` array with per-sentence offsets (about a third of the
memory of a padded ``[N, 77]`` int64 matrix, and no per-sentence Python
objects for dataloader workers to copy on access).
"""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging import print_log

#: Prefix selecting a Hugging Face tokenizer by hub name or local folder.
HF_PREFIX = 'hf:'


def build_text_tokenizer(name: str, context_length: Optional[int] = 77):
    """Build the tokenizer matching a text tower.

    Args:
        name (str): An open_clip model name (``'RN50'``, ``'ViT-B-16'``,
            registered custom configs, ``'hf-hub:…'``, ``'local-dir:…'``):
            its tokenizer comes from ``open_clip.get_tokenizer`` (CLIP BPE,
            or the HF tokenizer of an HF text tower). ``'hf:NAME_OR_DIR'``
            loads a Hugging Face tokenizer directly.
        context_length (int, optional): Tokens per sentence, SOT/CLS and
            EOT/SEP included. None takes the model config's. Defaults to 77.

    Returns:
        tuple: ``(tokenizer, context_length)`` with the length resolved.
    """
    import open_clip

    if name.startswith(HF_PREFIX):
        tokenizer = open_clip.tokenizer.HFTokenizer(
            name[len(HF_PREFIX):], context_length=context_length or 77)
    else:
        tokenizer = open_clip.get_tokenizer(
            name, context_length=context_length)
    length = int(context_length or tokenizer.context_length)
    if length < 2:
        raise ValueError(f'context_length must be >= 2, got {length}')
    return tokenizer, length


#: Sentences encoded between two progress updates.
_CHUNK = 4096


def _encode_ids(tokenizer, sentences: Sequence[str],
                progress: Optional[Callable[[int], None]] = None
                ) -> Optional[List[List[int]]]:
    """Untruncated token ids with start/end tokens, or None if unknown.

    Sentences are encoded in chunks of :data:`_CHUNK`; ``progress(n)`` is
    called after each with the chunk size.
    """
    from open_clip.tokenizer import HFTokenizer, SimpleTokenizer

    if (isinstance(tokenizer, SimpleTokenizer)
            and tokenizer.reduction_fn is None):
        sot, eot = tokenizer.sot_token_id, tokenizer.eot_token_id

        def encode(chunk):
            return [[sot, *tokenizer.encode(s), eot] for s in chunk]
    elif (isinstance(tokenizer, HFTokenizer)
          and not tokenizer.tokenizer_mode
          and not tokenizer.strip_sep_token):

        def encode(chunk):
            texts = [tokenizer.clean_fn(s) for s in chunk]
            return tokenizer.tokenizer(
                texts, add_special_tokens=True, truncation=False,
                verbose=False)['input_ids']
    else:
        return None
    ids: List[List[int]] = []
    for start in range(0, len(sentences), _CHUNK):
        chunk = sentences[start:start + _CHUNK]
        ids.extend(encode(chunk))
        if progress is not None:
            progress(len(chunk))
    return ids


class TokenStore:
    """Flat token storage with vectorised gathers.

    Sentence ``i`` owns ``tokens[offsets[i]:offsets[i + 1]]``; rows come out
    padded with ``pad_id`` to ``context_length``.

    Args:
        tokens (np.ndarray): Concatenated token ids, int32 ``[T]``.
        offsets (np.ndarray): Row starts, int64 ``[N + 1]``, ``offsets[0]
            == 0`` and ``offsets[-1] == T``.
        context_length (int): Padded row length ``L``; no row is longer.
        pad_id (int): Padding id. Defaults to 0.
    """

    def __init__(self, tokens: np.ndarray, offsets: np.ndarray,
                 context_length: int, pad_id: int = 0) -> None:
        self.tokens = np.ascontiguousarray(tokens, dtype=np.int32)
        self.offsets = np.ascontiguousarray(offsets, dtype=np.int64)
        self.context_length = int(context_length)
        self.pad_id = int(pad_id)
        self.lengths = np.diff(self.offsets)
        if (self.offsets.ndim != 1 or self.offsets[0] != 0
                or self.offsets[-1] != len(self.tokens)
                or (self.lengths < 0).any()
                or (self.lengths > self.context_length).any()):
            raise ValueError('inconsistent token store: offsets do not '
                             'partition the tokens into rows of at most '
                             f'{self.context_length}')

    def __len__(self) -> int:
        return len(self.lengths)

    def gather(self, indices) -> torch.Tensor:
        """Padded rows for ``indices`` (any int sequence/array/tensor).

        Returns:
            torch.Tensor: int64 ``[n, context_length]``.
        """
        if isinstance(indices, torch.Tensor):
            indices = indices.cpu().numpy()
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise IndexError(f'sentence index out of range [0, {len(self)})')
        starts, lens = self.offsets[idx], self.lengths[idx]
        pos = np.arange(self.context_length)
        valid = pos[None, :] < lens[:, None]
        out = np.full((len(idx), self.context_length), self.pad_id, np.int64)
        out[valid] = self.tokens[(starts[:, None] + pos[None, :])[valid]]
        return torch.from_numpy(out)

    def row(self, index: int) -> torch.Tensor:
        """One padded row, int64 ``[context_length]`` (per-item fast path)."""
        start, end = self.offsets[index], self.offsets[index + 1]
        if self.pad_id == 0:
            out = np.zeros(self.context_length, np.int64)  # 5x np.full
        else:
            out = np.full(self.context_length, self.pad_id, np.int64)
        out[:end - start] = self.tokens[start:end]
        return torch.from_numpy(out)


def tokenize_sentences(tokenizer, sentences: Sequence[str],
                       context_length: int,
                       progress: Optional[Callable[[int], None]] = None
                       ) -> Tuple[TokenStore, int]:
    """Tokenise sentences into a :class:`TokenStore`.

    Over-long sentences keep their first ``context_length - 1`` tokens and
    their end token (EOT / SEP), as CLIP's own tokenizer does.

    Args:
        tokenizer: From :func:`build_text_tokenizer`.
        sentences (Sequence[str]): ``N`` sentences.
        context_length (int): Row length ``L``.
        progress (Callable[[int], None], optional): Called with the number
            of sentences in each encoded chunk. Defaults to None.

    Returns:
        tuple: The store and the number of truncated sentences.
    """
    ids = _encode_ids(tokenizer, sentences, progress)
    if ids is None:
        # Tokenizers that only return padded rows (SigLIP, reduction
        # modes): keep full rows; truncation cannot be counted.
        rows = tokenizer(list(sentences), context_length=context_length)
        flat = rows.numpy().astype(np.int32).reshape(-1)
        offsets = np.arange(len(sentences) + 1) * context_length
        print_log(
            f'{type(tokenizer).__name__}: stored padded rows; truncation '
            'is not counted', logger='current')
        return TokenStore(flat, offsets, context_length), 0
    pad_id = getattr(getattr(tokenizer, 'tokenizer', None), 'pad_token_id',
                     0) or 0
    raw_len = np.fromiter(map(len, ids), np.int64, count=len(ids))
    flat = np.fromiter((t for row in ids for t in row), np.int32,
                       count=int(raw_len.sum()))
    raw_start = np.concatenate([[0], np.cumsum(raw_len)])
    # Keep positions < L - 1 and each row's last (end) token.
    pos = np.arange(len(flat)) - np.repeat(raw_start[:-1], raw_len)
    last = np.repeat(raw_len - 1, raw_len)
    keep = (pos < context_length - 1) | (pos == last)
    new_len = np.minimum(raw_len, context_length)
    offsets = np.concatenate([[0], np.cumsum(new_len)])
    num_truncated = int((raw_len > context_length).sum())
    if num_truncated:
        print_log(
            f'{num_truncated} of {len(ids)} sentences are longer than '
            f'{context_length} tokens and were truncated (end token kept)',
            logger='current')
    return TokenStore(flat[keep], offsets, context_length, pad_id), \
        num_truncated
