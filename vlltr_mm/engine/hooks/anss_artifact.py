"""The AnSS artifact: the selected anchors cached under a key of all inputs.

An artifact is a ``torch.save`` dict: ``anchors`` [C, M, D] (raw stage-1
text embeddings), ``indices`` [C, M] (corpus rows, best first), ``mask``
[C, M] (False = padded slot), ``scores`` [N] (L_lin of Eq. 2, NaN for the
cut-off rule) and ``meta``. It is reused only while every entry of
:data:`MATCH_KEYS` in ``meta`` equals this run's: together they cover every
input that changes the scores (corpus, stage-1 weights, both towers'
configs, the pool list, its images (draws included), its pipeline, its
options such as the seed of a random pipeline, the rule and M).
"""
import hashlib
import json
import os.path as osp
from typing import Optional, Tuple

import torch
from mmengine import dist

from vlltr_mm.utils.files import atomic_write, file_sha256

# 3: pool_options (draw, pipeline choice, seed) joined the key.
VERSION = 3
POOL_KEYS = ('image_encoder_sha256', 'pool_list_sha256', 'pool_sha256',
             'pool_pipeline_sha256', 'pool_options')
MATCH_KEYS = ('version', 'corpus_fingerprint', 'checkpoint_sha256',
              'text_encoder_sha256') + POOL_KEYS + ('selection',
                                                     'num_anchors')
NO_ARTIFACT = 'no artifact yet'


def config_sha256(cfg) -> str:
    """SHA-256 of a (nested) config as canonical JSON."""
    text = json.dumps(cfg, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode('utf-8')).hexdigest()


def artifact_key(corpus, checkpoint: str, text_cfg: dict, model_cfg,
                 pool, selection: str, num_anchors: int) -> dict:
    """This run's values of :data:`MATCH_KEYS`.

    Args:
        corpus (ClassTextCorpus): The corpus (its fingerprint).
        checkpoint (str): The stage-1 checkpoint (hashed).
        text_cfg (dict): The text tower config.
        model_cfg (dict): The runner's ``model`` config; its ``backbone``
            and ``data_preprocessor`` turn pool images into embeddings.
        pool (ImagePool, optional): None for the cut-off rule.
        selection (str): ``'anss'`` or ``'cutoff'``.
        num_anchors (int): M.

    Returns:
        dict: The key; pool entries are ``'unused'`` without a pool.
    """
    key = dict(
        version=VERSION,
        corpus_fingerprint=corpus.fingerprint,
        checkpoint_sha256=file_sha256(checkpoint),
        text_encoder_sha256=config_sha256(text_cfg),
        selection=selection,
        num_anchors=num_anchors)
    image = [model_cfg.get('backbone'), model_cfg.get('data_preprocessor')]
    key.update(
        dict.fromkeys(POOL_KEYS, 'unused') if pool is None else dict(
            image_encoder_sha256=config_sha256(image),
            pool_list_sha256=pool.list_sha256,
            pool_sha256=pool.images_sha256,
            pool_pipeline_sha256=pool.pipeline_sha256,
            pool_options=pool.options))
    return key


def read_artifact(path: str, key: dict,
                  strict: bool) -> Tuple[Optional[dict], str]:
    """The artifact at ``path`` if its key matches, and why not otherwise.

    Args:
        path (str): Artifact file.
        key (dict): This run's values of :data:`MATCH_KEYS`.
        strict (bool): Raise instead of returning None (for an artifact
            the user named explicitly).

    Returns:
        tuple[dict | None, str]: The artifact (None if missing, unreadable
        or stale) and the reason it is not used (``''`` when it is).
    """
    if not osp.isfile(path):
        if strict:
            raise FileNotFoundError(f'AnSS artifact {path!r} not found')
        return None, NO_ARTIFACT
    try:
        art = torch.load(path, map_location='cpu', weights_only=True)
        stored = art['meta']
    except Exception as e:  # a truncated or foreign file
        if strict:
            raise ValueError(f'cannot read AnSS artifact {path!r}: {e}')
        return None, f'unreadable ({e})'
    diff = [
        f'{k}: artifact {stored.get(k)!r} != expected {key[k]!r}'
        for k in MATCH_KEYS if stored.get(k) != key[k]
    ]
    if diff and strict:
        raise ValueError(f'AnSS artifact {path!r} does not match this '
                         'run: ' + '; '.join(diff))
    return (None, '; '.join(diff)) if diff else (art, '')


def write_artifact(path: str, art: dict) -> None:
    """Write ``art`` atomically (rank 0 only)."""
    with atomic_write(path) as f:
        torch.save(art, f)


def broadcast_artifact(art: Optional[dict], why: str, key: dict):
    """Share rank 0's decision (reuse or recompute) with every rank.

    The anchors travel as one tensor, the rest as small objects.

    Args:
        art (dict, optional): Rank 0's reusable artifact (ignored on other
            ranks).
        why (str): Rank 0's reason not to reuse.
        key (dict): Rank 0's key (other ranks pass None).

    Returns:
        tuple[dict | None, str, dict]: The same on every rank.
    """
    if dist.get_world_size() == 1:
        return art, why, key
    anchors = None if art is None else art.pop('anchors')
    shared = [art, why, key]
    dist.broadcast_object_list(shared, src=0)
    art, why, key = shared
    if art is not None:
        if anchors is None:
            anchors = torch.zeros(*art['indices'].shape,
                                  art['meta']['embed_dim'])
        dist.broadcast(anchors, src=0)
        art['anchors'] = anchors
    return art, why, key


def check_ranks_agree(art: dict, logger) -> None:
    """Fail loudly if ranks would train with different anchors."""
    world = dist.get_world_size()
    if world == 1:
        return
    digest = torch.stack([
        art['anchors'].double().sum(), art['anchors'].double().abs().sum(),
        art['indices'].double().sum(), art['mask'].double().sum()
    ])
    digests = dist.all_gather(digest)
    if not all(torch.equal(d.cpu(), digests[0].cpu()) for d in digests):
        raise RuntimeError('AnSS anchors differ between ranks')
    logger.info(f'AnSS: anchors identical on all {world} ranks')
