"""The text-side inputs of anchor sentence selection (VL-LTR §3.3).

The class-text corpus (class names default to the train dataset's), the
config of the text tower that embeds it and the embedding itself, with the
stage-1 checkpoint's ``text_encoder.*`` weights, split over ranks.
"""
import copy
from typing import Optional

import torch
from mmpretrain.registry import MODELS, TASK_UTILS

from vlltr_mm.models.classifiers.corpus_embedding import embed_corpus

from .anss_checkpoint import load_stage1_tower


def build_corpus(corpus, runner):
    """Build the hook's ``corpus`` (a config or a built corpus).

    Args:
        corpus (dict | ClassTextCorpus): Without ``class_names`` and
            ``labels_file``, the train dataset's ``metainfo['classes']``
            name the classes.
        runner (Runner): The runner.

    Returns:
        ClassTextCorpus: The corpus.
    """
    if not isinstance(corpus, dict):
        return corpus
    cfg = copy.deepcopy(corpus)
    if cfg.get('class_names') is None and cfg.get('labels_file') is None:
        cfg['class_names'] = list(
            runner.train_dataloader.dataset.metainfo['classes'])
    return TASK_UTILS.build(cfg)


def text_encoder_cfg(text_encoder: Optional[dict], model) -> dict:
    """The text tower config: the hook's, else the backbone's CLIP model.

    Args:
        text_encoder (dict, optional): The hook's ``text_encoder``.
        model (BaseModel): The stage-2 model; its backbone's
            ``model_name`` names the CLIP model when ``text_encoder`` is
            None.

    Returns:
        dict: A ``MODELS`` config.
    """
    if text_encoder is not None:
        return copy.deepcopy(text_encoder)
    name = getattr(model.backbone, 'model_name', None)
    if name is None:
        raise ValueError(
            'AnchorSentenceSelectionHook needs text_encoder= when the '
            'backbone is not an OpenCLIPVisual (no model_name)')
    return dict(type='OpenCLIPTextEncoder', model_name=name)


def embed_sentences(text_cfg: dict, checkpoint: str, corpus,
                    device: torch.device, batch_size: int) -> torch.Tensor:
    """Raw stage-1 text embeddings of every corpus sentence (collective).

    Args:
        text_cfg (dict): Text tower config (see :func:`text_encoder_cfg`).
        checkpoint (str): Stage-1 checkpoint with ``text_encoder.*``.
        corpus (ClassTextCorpus): The corpus.
        device (torch.device): Where to run the tower.
        batch_size (int): Sentences per forward.

    Returns:
        torch.Tensor: ``[N, D]`` float32 on ``device``, corpus order.
    """
    encoder = MODELS.build(text_cfg)
    encoder.load_state_dict(load_stage1_tower(checkpoint, 'text_encoder'))
    encoder.to(device).eval()
    return embed_corpus(encoder, corpus, encoder.embed_dim, device,
                        batch_size, 'AnSS: sentence embeddings')
