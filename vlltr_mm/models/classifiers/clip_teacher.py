"""The frozen CLIP teacher of CVLP's distillation loss (Eq. 3)."""
import copy
import hashlib
import math
import os.path as osp
from typing import Optional, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.dist import all_gather, barrier, get_dist_info
from mmengine.logging import print_log

from vlltr_mm.utils.files import atomic_write

from .corpus_embedding import embed_corpus


def _frozen_copy(module: nn.Module) -> nn.Module:
    module = copy.deepcopy(module).eval()
    for p in module.parameters():
        p.requires_grad_(False)
    return module


def state_digest(module: nn.Module) -> str:
    """SHA-256 over a module's state dict (names, shapes, dtypes, values)."""
    h = hashlib.sha256()
    for name, value in module.state_dict().items():
        value = value.detach().cpu().contiguous()
        h.update(f'{name}:{tuple(value.shape)}:{value.dtype}'.encode())
        h.update(value.view(torch.uint8).numpy().tobytes()
                 if value.numel() else b'')
    return h.hexdigest()


class CLIPTeacher:
    """A frozen copy of the initial CLIP, run without gradients.

    The authors run a second full CLIP every step. Both the teacher and the
    corpus sentences are fixed, so the teacher's sentence embeddings are
    computed once for the whole corpus and cached on disk under a key of the
    corpus fingerprint and the teacher's text-tower weights; a training step
    then runs the teacher on images only.

    Deliberately not an ``nn.Module``: it must not be seen by the optimizer,
    the state dict or DDP.

    Args:
        visual (nn.Module): The student's image tower at initialisation
            (copied).
        text (nn.Module): The student's text tower at initialisation
            (copied; moved back to the CPU once the text cache exists).
        log_scale (float): The initial log logit scale (teacher's 1/τ is its
            exp).
        half (bool): Run the image tower in float16 on CUDA (ignored on
            CPU). Defaults to False.
        cache_dir (str, optional): Where the text cache lives. Defaults to
            ``~/.cache/vlltr_mm/teacher_text``.
        batch_size (int): Sentences per batch when building the cache.
            Defaults to 256.
    """

    def __init__(self,
                 visual: nn.Module,
                 text: nn.Module,
                 log_scale: float,
                 half: bool = False,
                 cache_dir: Optional[str] = None,
                 batch_size: int = 256):
        self.visual = _frozen_copy(visual)
        self.text = _frozen_copy(text)
        self.text_digest = state_digest(self.text)
        self.scale = math.exp(log_scale)
        self.half = half
        self.cache_dir = cache_dir or osp.join(
            osp.expanduser('~'), '.cache', 'vlltr_mm', 'teacher_text')
        self.batch_size = batch_size
        self._text_cache = None
        self._cache_key = None

    def cache_path(self, corpus) -> str:
        """Cache file for ``corpus`` (keyed by corpus and teacher weights)."""
        key = hashlib.sha256(
            f'{corpus.fingerprint}|{self.text_digest}'.encode()).hexdigest()
        return osp.join(self.cache_dir, f'teacher_text_{key[:24]}.pt')

    def _to(self, module: nn.Module, device: torch.device) -> nn.Module:
        if next(module.parameters()).device != device:
            module.to(device)
            if self.half and device.type == 'cuda':
                module.half()
        return module

    @torch.no_grad()
    def _encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        text = self._to(self.text, tokens.device)
        return F.normalize(text(tokens).float(), dim=-1)

    def text_cache(self, corpus, device: torch.device) -> torch.Tensor:
        """Normalised teacher embeddings of all sentences [N, D]."""
        path = self.cache_path(corpus)
        if self._text_cache is not None and self._cache_key == path:
            if self._text_cache.device != device:
                self._text_cache = self._text_cache.to(device)
            return self._text_cache
        cache = None
        if osp.isfile(path):
            try:
                cache = torch.load(path, map_location='cpu')
                if cache.shape[0] != corpus.num_sentences:
                    raise ValueError('row count differs from the corpus')
            except Exception as e:  # stale or truncated file
                print_log(f'Rebuilding teacher text cache {path}: {e}',
                          logger='current', level=30)
                cache = None
        # Every rank must agree on whether to build: the build is collective.
        missing = all_gather(
            torch.tensor([int(cache is None)], device=device))
        if any(bool(m) for m in missing):
            print_log(f'Embedding {corpus.num_sentences} corpus sentences '
                      'with the teacher (cached for later runs)',
                      logger='current')
            cache = embed_corpus(self._encode_text, corpus,
                                 self.visual.embed_dim, device,
                                 self.batch_size,
                                 'CLIP teacher: sentence embeddings').cpu()
            if get_dist_info()[0] == 0:
                with atomic_write(path) as f:
                    torch.save(cache, f)
            barrier()
            self.text.cpu()
        self._text_cache, self._cache_key = cache.to(device), path
        return self._text_cache

    @torch.no_grad()
    def embed(self, images: torch.Tensor, texts: torch.Tensor,
              text_indices: Optional[torch.Tensor], corpus
              ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Teacher embeddings for a batch.

        Args:
            images (Tensor): [B, 3, H, W].
            texts (Tensor): Token ids [B, L]; used only without indices.
            text_indices (Tensor, optional): Corpus rows [B] of the
                sentences; with them the text cache replaces the text tower.
            corpus: The ``ClassTextCorpus`` the indices refer to.

        Returns:
            tuple: normalised image [B, D] and text [B, D] embeddings (fp32)
            and the teacher's 1/τ as a scalar tensor.
        """
        device = images.device
        visual = self._to(self.visual, device)
        dtype = next(visual.parameters()).dtype
        img = F.normalize(visual(images.to(dtype))[-1].float(), dim=-1)
        if text_indices is not None and corpus is not None:
            cache = self.text_cache(corpus, device)
            txt = cache[text_indices.to(device)]
        else:
            txt = self._encode_text(texts)
        return img, txt, torch.tensor(self.scale, device=device)
