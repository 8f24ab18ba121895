"""The image pool I' of anchor sentence selection (VL-LTR §3.3, Eq. 2).

The pool is one split of the run's data (``val``, ``train`` or ``test``)
rebuilt with the evaluation or the training pipeline, at most K images per
class, each once or drawn with square-root weights (the options:
:mod:`.anss_pool_spec`). Besides the images, :class:`ImagePool` carries the
fingerprints that must enter the AnSS artifact key: the list file's bytes,
the pool's images (draws included), the pipeline config and the options.
"""
import copy
import hashlib
import math
import os.path as osp
from typing import Any, NamedTuple, Optional, Sequence

import numpy as np
import torch
from mmengine.dataset import pseudo_collate
from mmengine.logging import print_log
from mmpretrain.registry import DATASETS
from torch.utils.data import DataLoader, Subset

from vlltr_mm.datasets.class_text.corpus_build import RankZeroProgress
from vlltr_mm.datasets.samplers import SquareRootSampler
from vlltr_mm.models.classifiers.corpus_embedding import rank_shard
from vlltr_mm.utils.distributed import gather_no_grad
from vlltr_mm.utils.files import file_sha256

from .anss_artifact import config_sha256
from .anss_pool_spec import pool_options
from .anss_randomness import SeededItems
from .anss_scoring import lin_loss_scores, select_pool


class ImagePool(NamedTuple):
    """The chosen pool images and their fingerprints.

    Attributes:
        dataset (BaseDataset): The split, with the pool's pipeline.
        indices (np.ndarray): int64 ``[P]`` rows of ``dataset``, in pool
            order (ascending, or in draw order with repeats for
            ``draw='sqrt'``).
        labels (np.ndarray): int64 ``[P]`` their classes.
        seed (int): Seeds image ``k``'s pipeline with ``(seed, k)``.
        list_sha256 (str): SHA-256 of the split's list file (None when the
            dataset has no ``ann_file``).
        images_sha256 (str): SHA-256 of the pool's ``(path, label)`` rows,
            in pool order.
        pipeline_sha256 (str): SHA-256 of the pipeline config.
        options (str): The pool options
            (:func:`.anss_pool_spec.pool_options`).
    """
    dataset: Any
    indices: np.ndarray
    labels: np.ndarray
    seed: int
    list_sha256: Optional[str]
    images_sha256: str
    pipeline_sha256: str
    options: str


def _innermost(dataset_cfg: dict) -> dict:
    """Strip dataset wrappers (``dataset=...`` without a pipeline)."""
    while 'pipeline' not in dataset_cfg and 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def _pool_configs(spec: dict, cfg) -> tuple:
    """The pool's dataset config and its pipeline (``spec['pipeline']``)."""
    ds_cfg = spec['dataset'] or (cfg.get(f"{spec['split']}_dataloader")
                                 or {}).get('dataset')
    pipeline = spec['pipeline']
    if isinstance(pipeline, str):
        loaders = ('train_dataloader', ) if pipeline == 'train' else (
            'val_dataloader', 'test_dataloader')
        pipeline = next((_innermost(cfg[name]['dataset']).get('pipeline')
                         for name in loaders if cfg.get(name)), None)
    if ds_cfg is None or pipeline is None:
        raise ValueError(
            f"no {spec['split']}_dataloader dataset / {spec['pipeline']} "
            'pipeline in the runner config; give pool=dict(dataset=..., '
            'pipeline=[...]) or build the runner from a config')
    ds_cfg = copy.deepcopy(_innermost(ds_cfg))
    ds_cfg['pipeline'] = copy.deepcopy(pipeline)
    return ds_cfg, pipeline


def build_pool(spec: dict, cfg, class_names: Sequence[str]) -> ImagePool:
    """Build the pool and warn about classes it has no image of.

    Args:
        spec (dict): The hook's ``pool`` argument, checked by
            :func:`.anss_pool_spec.check_pool_spec`.
        cfg (Config): The runner's config.
        class_names (Sequence[str]): The corpus classes, in label order.

    Returns:
        ImagePool: The pool.
    """
    ds_cfg, pipeline = _pool_configs(spec, cfg)
    dataset = DATASETS.build(ds_cfg)
    labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
    if len(labels) and labels.max() >= len(class_names):
        raise ValueError(f'the pool dataset has label {labels.max()} but '
                         f'the corpus only {len(class_names)} classes')
    keep = select_pool(labels, spec['max_per_class'], spec['mode'],
                       spec['seed'])
    if spec['draw'] == 'sqrt' and len(keep):
        keep = _draw_sqrt(dataset, keep, spec['seed'])
    ann_file = getattr(dataset, 'ann_file', None)
    missing = np.flatnonzero(
        np.bincount(labels[keep], minlength=len(class_names)) == 0)
    if len(missing):
        names = [class_names[c] for c in missing[:20]]
        drawn = ' (none drawn)' if spec['draw'] else ''
        print_log(
            f"AnSS: the {spec['split']} pool ({ann_file}) has no image"
            f'{drawn} of {len(missing)} classes {names}; their sentences '
            'score +inf and keep corpus order (cut-off anchors). Add images '
            'of them to that list or choose another pool=dict(split=...).',
            logger='current', level=30)
    digest = hashlib.sha256()
    for i in keep.tolist():
        info = dataset.get_data_info(i)
        digest.update(f"{info.get('img_path')}\t{labels[i]}\n".encode())
    list_sha = file_sha256(ann_file) if ann_file and osp.isfile(
        ann_file) else None
    return ImagePool(dataset, keep, labels[keep], spec['seed'], list_sha,
                     digest.hexdigest(), config_sha256(pipeline),
                     pool_options(spec))


def _draw_sqrt(dataset, keep: np.ndarray, seed: int) -> np.ndarray:
    """``len(keep)`` draws with replacement from the rows ``keep``, weight
    ``1 / sqrt(n_c)`` over them (the authors' iNat select loader: their
    weighted sampler at epoch 0, one process), in draw order."""
    sampler = SquareRootSampler(
        Subset(dataset, keep.tolist()), seed=seed, round_up=False)
    return keep[sampler.global_indices().numpy()]


@torch.no_grad()
def embed_pool(model, backbone_state: dict, pool: ImagePool, dim: int,
               batch_size: int, num_workers: int) -> torch.Tensor:
    """Embed the pool images with the stage-1 image tower, over ranks.

    Pool image ``k`` goes through the pipeline under generators seeded
    from ``(pool.seed, k)`` (:class:`.anss_randomness.SeededItems`), so a
    random pipeline gives the same embeddings for any ``num_workers``,
    ``batch_size`` or number of ranks.

    Args:
        model (BaseModel): The stage-2 model (its ``data_preprocessor``
            and ``backbone`` architecture are used).
        backbone_state (dict): Stage-1 ``backbone.*`` weights.
        pool (ImagePool): The pool.
        dim (int): Embedding size ``D`` (for a rank without images).
        batch_size (int): Images per forward.
        num_workers (int): Dataloader workers.

    Returns:
        torch.Tensor: ``[P, D]`` float32 image embeddings in pool order,
        identical on every rank.
    """
    backbone = model.backbone
    current = backbone.state_dict()
    if current.keys() != backbone_state.keys() or not all(
            torch.equal(current[k].cpu(), v)
            for k, v in backbone_state.items()):
        # e.g. resumed from a fine-tuned LGR checkpoint: embed with the
        # stage-1 weights so anchors depend on the hashed inputs only.
        backbone = copy.deepcopy(backbone)
        backbone.load_state_dict(backbone_state, strict=True)
    was_training = backbone.training
    backbone.eval()
    rows, sizes = rank_shard(len(pool.indices))
    loader = DataLoader(
        Subset(SeededItems(pool.dataset, pool.indices, pool.seed),
               rows.tolist()),
        batch_size=batch_size,
        num_workers=num_workers,
        collate_fn=pseudo_collate,
        # The loader's base seed would come from the global generator;
        # SeededItems seeds every image, so a private one does.
        generator=torch.Generator())
    progress = RankZeroProgress(len(rows), 'AnSS: pool image embeddings')
    out = []
    for batch in loader:
        feats = backbone(model.data_preprocessor(batch, False)['inputs'])
        if isinstance(feats, (tuple, list)):
            feats = feats[-1]
        out.append(feats.float())
        progress.update(len(feats))
    progress.close()
    backbone.train(was_training)
    device = next(model.parameters()).device
    local = torch.cat(out) if out else torch.zeros(
        0, dim, device=device)
    return gather_no_grad(local, sizes)


def score_sentences(text: torch.Tensor, images: torch.Tensor, corpus,
                    pool: ImagePool, logit_scale: float,
                    chunk_size: int) -> torch.Tensor:
    """L_lin (Eq. 2) of every sentence against the pool, over ranks.

    Args:
        text (torch.Tensor): ``[N, D]`` sentence embeddings (all ranks).
        images (torch.Tensor): ``[P, D]`` pool image embeddings.
        corpus (ClassTextCorpus): Gives each sentence's class.
        pool (ImagePool): Gives each image's class.
        logit_scale (float): Stage-1 log 1/τ (exponentiated here).
        chunk_size (int): Sentences scored at once.

    Returns:
        torch.Tensor: ``[N]`` float32 scores on the CPU, every rank.
    """
    rows, sizes = rank_shard(corpus.num_sentences)
    local = lin_loss_scores(text[rows], images, corpus.sentence_labels[rows],
                            pool.labels, math.exp(logit_scale), chunk_size)
    return gather_no_grad(local, sizes).cpu()
