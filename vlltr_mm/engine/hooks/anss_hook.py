"""Anchor sentence selection (AnSS, VL-LTR §3.3) as an MMEngine hook."""
import copy
import hashlib
import math
import os
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine import dist
from mmengine.dataset import pseudo_collate
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.utils import ProgressBar
from mmpretrain.registry import DATASETS, HOOKS, MODELS, TASK_UTILS
from torch.utils.data import DataLoader, Subset

from vlltr_mm.engine.hooks.anss_scoring import (
    lin_loss_scores,
    select_anchors,
    select_pool,
)

# Artifact metadata that must agree before a stored selection is reused.
_MATCH_KEYS = ('version', 'corpus_fingerprint', 'checkpoint_sha256',
               'pool_sha256', 'selection', 'num_anchors')
_VERSION = 1


def file_sha256(path: str, block: int = 1 << 22) -> str:
    """SHA-256 of a file, read in ``block``-byte pieces."""
    digest = hashlib.sha256()
    with open(path, 'rb') as f:
        for piece in iter(lambda: f.read(block), b''):
            digest.update(piece)
    return digest.hexdigest()


def _innermost(dataset_cfg: dict) -> dict:
    """Strip dataset wrappers (``dataset=...`` without a pipeline)."""
    while 'pipeline' not in dataset_cfg and 'dataset' in dataset_cfg:
        dataset_cfg = dataset_cfg['dataset']
    return dataset_cfg


def _gather_strided(local: torch.Tensor, total: int) -> torch.Tensor:
    """Undo a strided split: rank r held rows r, r + w, r + 2w, ..."""
    world_size = dist.get_world_size()
    if world_size == 1:
        return local
    rows = math.ceil(total / world_size)
    padded = local.new_zeros((rows, ) + tuple(local.shape[1:]))
    padded[:local.shape[0]] = local
    parts = dist.all_gather(padded)
    return torch.stack(parts, dim=1).flatten(0, 1)[:total]


@HOOKS.register_module()
class AnchorSentenceSelectionHook(Hook):
    """Select the anchor sentences of the LGR head before training.

    Embeds every corpus sentence with the stage-1 (CVLP) text encoder and
    every pool image with the stage-1 visual encoder, scores each sentence
    with L_lin (Eq. 2,
    :func:`~vlltr_mm.engine.hooks.anss_scoring.lin_loss_scores`)
    and keeps the ``num_anchors`` best per class; ``selection='cutoff'``
    keeps the first ``num_anchors`` instead (paper Table 4, #7) and skips
    the pool. Work is split across ranks (strided) and gathered. Rank 0
    writes one artifact (``anchors`` [C, M, D] raw text embeddings,
    ``indices`` [C, M], ``mask`` [C, M], ``scores`` [N], ``meta``), reused
    while the corpus fingerprint, the checkpoint's and the pool's SHA-256,
    the selection and M match. The anchors are then written into the
    head's buffers with :meth:`LGRHead.set_anchors`, so every checkpoint
    carries them. The stage-1 checkpoint path is stored in saved
    checkpoints, so a resumed run finds it again.

    Args:
        corpus (dict | ClassTextCorpus): Corpus config for ``TASK_UTILS``
            or a built corpus. Without ``class_names`` / ``labels_file`` the
            train dataset's ``metainfo['classes']`` are used.
        text_encoder (dict, optional): Config of the text encoder
            (``OpenCLIPTextEncoder``); its weights come from the
            checkpoint's ``text_encoder.*`` entries. Defaults to None: the
            text tower of the model's backbone ``model_name``.
        checkpoint (str, optional): Stage-1 checkpoint (``backbone.*``,
            ``text_encoder.*``, ``logit_scale``). Defaults to None: the one
            recorded in a resumed checkpoint, else the runner's
            ``load_from``.
        pool (dict): Image pool: ``split`` (``'val'``, ``'train'`` or
            ``'test'``: that dataloader's dataset rebuilt with the val
            pipeline), ``max_per_class`` (int or None for the whole split),
            ``mode`` (``'first'`` or ``'random'``), ``seed``; optional
            ``dataset`` / ``pipeline`` configs override the runner's.
            Defaults to ``dict(split='val', max_per_class=50,
            mode='first', seed=0)``.
        num_anchors (int): M. Defaults to 64.
        selection (str): ``'anss'`` or ``'cutoff'``. Defaults to ``'anss'``.
        batch_size (int): Sentences / images per forward. Defaults to 256.
        num_workers (int): Pool dataloader workers. Defaults to 2.
        chunk_size (int): Sentences per scoring chunk. Defaults to 4096.
        artifact (str, optional): A precomputed artifact to use; it must
            match, else ValueError. Defaults to None.
        out_file (str): Artifact name under the work dir.
            Defaults to ``'anss_anchors.pth'``.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 corpus,
                 text_encoder: Optional[dict] = None,
                 checkpoint: Optional[str] = None,
                 pool: Optional[dict] = None,
                 num_anchors: int = 64,
                 selection: str = 'anss',
                 batch_size: int = 256,
                 num_workers: int = 2,
                 chunk_size: int = 4096,
                 artifact: Optional[str] = None,
                 out_file: str = 'anss_anchors.pth'):
        if selection not in ('anss', 'cutoff'):
            raise ValueError("selection must be 'anss' or 'cutoff', got "
                             f'{selection!r}')
        self.corpus = corpus
        self.text_encoder = text_encoder
        self.checkpoint = checkpoint
        self.pool = dict(split='val', max_per_class=50, mode='first', seed=0)
        self.pool.update(pool or {})
        if self.pool['split'] not in ('val', 'train', 'test'):
            raise ValueError("pool split must be 'val', 'train' or 'test', "
                             f"got {self.pool['split']!r}")
        self.num_anchors = num_anchors
        self.selection = selection
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.chunk_size = chunk_size
        self.artifact = artifact
        self.out_file = out_file
        self.reused = None  # set by before_train: True if nothing computed
        self._resumed_record = None
        self._record = None

    # -- checkpoint bookkeeping -------------------------------------------
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_record = checkpoint.get('meta', {}).get('anss')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._record is not None:
            checkpoint.setdefault('meta', {})['anss'] = dict(self._record)

    def _stage1_path(self, runner) -> str:
        path = self.checkpoint
        if path is None and self._resumed_record is not None:
            path = self._resumed_record.get('checkpoint')
        if path is None and not runner._resume:
            path = runner._load_from
        if path is None:
            raise ValueError(
                'AnchorSentenceSelectionHook needs the stage-1 (CVLP) '
                'checkpoint: set `checkpoint=` in the hook or `load_from`.')
        if not osp.isfile(path):
            raise FileNotFoundError(
                f'stage-1 checkpoint {path!r} not found; AnSS expects the '
                'CVLP checkpoint with backbone.*, text_encoder.* and '
                'logit_scale entries (train the cvlp_* config first).')
        return path

    # -- inputs --------------------------------------------------------------
    def _build_corpus(self, runner):
        if not isinstance(self.corpus, dict):
            return self.corpus
        cfg = copy.deepcopy(self.corpus)
        if cfg.get('class_names') is None and cfg.get('labels_file') is None:
            cfg['class_names'] = list(
                runner.train_dataloader.dataset.metainfo['classes'])
        return TASK_UTILS.build(cfg)

    def _build_pool(self, runner, num_classes: int):
        spec = self.pool
        ds_cfg = spec.get('dataset') or (runner.cfg.get(
            f"{spec['split']}_dataloader") or {}).get('dataset')
        pipeline = spec.get('pipeline')
        for name in ('val_dataloader', 'test_dataloader'):
            if pipeline is None and runner.cfg.get(name):
                pipeline = _innermost(runner.cfg[name]['dataset'])['pipeline']
        if ds_cfg is None or pipeline is None:
            raise ValueError(
                f"no {spec['split']}_dataloader dataset / val pipeline in "
                'the runner config; give pool=dict(dataset=..., '
                'pipeline=...) or build the runner from a config')
        ds_cfg = copy.deepcopy(_innermost(ds_cfg))
        ds_cfg['pipeline'] = copy.deepcopy(pipeline)
        dataset = DATASETS.build(ds_cfg)
        labels = np.asarray(dataset.get_gt_labels(), dtype=np.int64)
        if len(labels) and labels.max() >= num_classes:
            raise ValueError(f'the pool dataset has label {labels.max()} but '
                             f'the corpus only {num_classes} classes')
        keep = select_pool(labels, spec['max_per_class'], spec['mode'],
                           spec['seed'])
        digest = hashlib.sha256()
        for i in keep.tolist():
            info = dataset.get_data_info(i)
            digest.update(f"{info.get('img_path')}\t{labels[i]}\n".encode())
        return dataset, keep, labels[keep], digest.hexdigest()

    @staticmethod
    def _load_state(path: str) -> dict:
        ckpt = torch.load(path, map_location='cpu', weights_only=True)
        state = ckpt.get('state_dict', ckpt)
        return {
            (k[7:] if k.startswith('module.') else k): v
            for k, v in state.items()
        }

    @staticmethod
    def _sub_state(state: dict, prefix: str, path: str) -> dict:
        sub = {
            k[len(prefix):]: v
            for k, v in state.items() if k.startswith(prefix)
        }
        if not sub:
            raise KeyError(f'{path!r} has no {prefix}* weights; AnSS needs a '
                           'stage-1 (CVLP) checkpoint')
        return sub

    # -- embedding -----------------------------------------------------------
    def _text_encoder_cfg(self, model) -> dict:
        if self.text_encoder is not None:
            return copy.deepcopy(self.text_encoder)
        name = getattr(model.backbone, 'model_name', None)
        if name is None:
            raise ValueError(
                'AnchorSentenceSelectionHook needs text_encoder= when the '
                'backbone is not an OpenCLIPVisual (no model_name)')
        return dict(type='OpenCLIPTextEncoder', model_name=name)

    @torch.no_grad()
    def _embed_sentences(self, state, corpus, path, device,
                         encoder_cfg: dict) -> torch.Tensor:
        encoder = MODELS.build(encoder_cfg)
        encoder.load_state_dict(
            self._sub_state(state, 'text_encoder.', path), strict=True)
        encoder.to(device).eval()
        rank, world = dist.get_rank(), dist.get_world_size()
        ids = np.arange(rank, corpus.num_sentences, world)
        steps = range(0, len(ids), self.batch_size)
        bar = ProgressBar(len(steps)) if rank == 0 else None
        out = []
        for start in steps:
            tokens = corpus.get_tokens(ids[start:start + self.batch_size])
            out.append(encoder(tokens.to(device)).float())
            if bar is not None:
                bar.update()
        local = torch.cat(out) if out else torch.zeros(
            0, encoder.embed_dim, device=device)
        return _gather_strided(local, corpus.num_sentences)

    @torch.no_grad()
    def _embed_pool(self, model, state, dataset, keep, path,
                    dim: int) -> torch.Tensor:
        backbone = model.backbone
        stage1 = self._sub_state(state, 'backbone.', path)
        current = backbone.state_dict()
        if current.keys() != stage1.keys() or not all(
                torch.equal(current[k].cpu(), v) for k, v in stage1.items()):
            # e.g. resumed from a fine-tuned LGR checkpoint: embed with the
            # stage-1 weights so anchors depend on the hashed inputs only.
            backbone = copy.deepcopy(backbone)
            backbone.load_state_dict(stage1, strict=True)
        was_training = backbone.training
        backbone.eval()
        rank, world = dist.get_rank(), dist.get_world_size()
        loader = DataLoader(
            Subset(dataset, keep[rank::world].tolist()),
            batch_size=self.batch_size,
            num_workers=self.num_workers,
            collate_fn=pseudo_collate)
        bar = ProgressBar(len(loader)) if rank == 0 else None
        out, device = [], next(model.parameters()).device
        for batch in loader:
            inputs = model.data_preprocessor(batch, False)['inputs']
            feats = backbone(inputs)
            if isinstance(feats, (tuple, list)):
                feats = feats[-1]
            out.append(feats.float())
            if bar is not None:
                bar.update()
        backbone.train(was_training)
        local = torch.cat(out) if out else torch.zeros(0, dim, device=device)
        return _gather_strided(local, len(keep))

    def _compute(self, runner, model, corpus, path, pool, meta) -> dict:
        state = self._load_state(path)
        if 'logit_scale' not in state:
            raise KeyError(f'{path!r} has no logit_scale entry; AnSS needs a '
                           'stage-1 (CVLP) checkpoint')
        meta['logit_scale'] = float(state['logit_scale'])
        device = next(model.parameters()).device
        runner.logger.info(f'AnSS: embedding {corpus.num_sentences} '
                           'sentences')
        text = self._embed_sentences(state, corpus, path, device,
                                     self._text_encoder_cfg(model))
        scores = torch.full((corpus.num_sentences, ), float('nan'))
        if self.selection == 'anss':
            dataset, keep, pool_labels, _ = pool
            runner.logger.info(f'AnSS: embedding {len(keep)} pool images')
            images = self._embed_pool(model, state, dataset, keep, path,
                                      text.shape[1])
            rank, world = dist.get_rank(), dist.get_world_size()
            local = lin_loss_scores(
                text[rank::world], images,
                corpus.sentence_labels[rank::world], pool_labels,
                math.exp(meta['logit_scale']), self.chunk_size)
            scores = _gather_strided(local.unsqueeze(1),
                                     corpus.num_sentences)[:, 0].cpu()
        indices, mask = select_anchors(scores, corpus.class_offsets,
                                       self.num_anchors, self.selection)
        return dict(
            anchors=text[indices.to(text.device)].cpu(),
            indices=indices,
            mask=mask,
            scores=scores,
            meta=meta)

    @staticmethod
    def _check_ranks_agree(runner, art: dict) -> None:
        """Fail loudly if ranks would train with different anchors."""
        world = dist.get_world_size()
        if world == 1:
            return
        digest = torch.stack([
            art['anchors'].double().sum(),
            art['anchors'].double().abs().sum(),
            art['indices'].double().sum(),
            art['mask'].double().sum()
        ])
        digests = dist.all_gather(digest)
        if not all(torch.equal(d.cpu(), digests[0].cpu()) for d in digests):
            raise RuntimeError('AnSS anchors differ between ranks')
        runner.logger.info(f'AnSS: anchors identical on all {world} ranks')

    # -- main ------------------------------------------------------------
    def _load_artifact(self, path: str, meta: dict, strict: bool):
        """The artifact at ``path`` if it matches ``meta``, else None."""
        if not osp.isfile(path):
            if strict:
                raise FileNotFoundError(f'AnSS artifact {path!r} not found')
            return None, 'no artifact yet'
        try:
            art = torch.load(path, map_location='cpu', weights_only=True)
            stored = art['meta']
        except Exception as e:  # a truncated or foreign file
            if strict:
                raise ValueError(f'cannot read AnSS artifact {path!r}: {e}')
            return None, f'unreadable ({e})'
        diff = [
            f'{k}: artifact {stored.get(k)!r} != expected {meta[k]!r}'
            for k in _MATCH_KEYS if stored.get(k) != meta[k]
        ]
        if diff and strict:
            raise ValueError(f'AnSS artifact {path!r} does not match this '
                             'run: ' + '; '.join(diff))
        return (None, '; '.join(diff)) if diff else (art, '')

    def before_train(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = getattr(model, 'head', None)
        if not hasattr(head, 'set_anchors'):
            raise TypeError('AnchorSentenceSelectionHook needs a model whose '
                            '`head` has set_anchors() (e.g. LGRHead), got '
                            f'{type(head).__name__}')
        path = self._stage1_path(runner)
        corpus = self._build_corpus(runner)
        if getattr(head, 'num_classes', corpus.num_classes) != \
                corpus.num_classes:
            raise ValueError(f'the head has {head.num_classes} classes but '
                             f'the corpus {corpus.num_classes}')
        pool = (None, np.zeros(0, np.int64), None, 'unused')
        if self.selection == 'anss':
            pool = self._build_pool(runner, corpus.num_classes)
        out_path = self.artifact or osp.join(runner.work_dir, self.out_file)
        decision = [None, None]
        if dist.get_rank() == 0:
            meta = dict(
                version=_VERSION,
                corpus_fingerprint=corpus.fingerprint,
                checkpoint_sha256=file_sha256(path),
                pool_sha256=pool[3],
                selection=self.selection,
                num_anchors=self.num_anchors,
                num_classes=corpus.num_classes,
                num_sentences=corpus.num_sentences,
                num_pool_images=len(pool[1]),
                checkpoint=osp.abspath(path))
            art, why = self._load_artifact(out_path, meta,
                                           self.artifact is not None)
            if art is None:
                # A stale artifact deserves a warning, a first run not.
                level = 'info' if why == 'no artifact yet' else 'warning'
                getattr(runner.logger, level)(
                    f'AnSS: computing anchors ({why})')
                meta['logit_scale'] = None
            anchors = None if art is None else art.pop('anchors')
            decision = [meta, art]
        dist.broadcast_object_list(decision, src=0)
        meta, art = decision
        self.reused = art is not None
        if self.reused:
            # Anchors travel as one tensor, the rest as small objects.
            if dist.get_rank() != 0:
                anchors = torch.zeros(*art['indices'].shape,
                                      art['meta']['embed_dim'])
            dist.broadcast(anchors, src=0)
            art['anchors'] = anchors
            runner.logger.info(f'AnSS: reusing {out_path}')
        else:
            art = self._compute(runner, model, corpus, path, pool, meta)
            art['meta']['embed_dim'] = int(art['anchors'].shape[-1])
            if dist.get_rank() == 0:
                tmp = f'{out_path}.tmp{os.getpid()}'
                torch.save(art, tmp)
                os.replace(tmp, out_path)
                runner.logger.info(f'AnSS: wrote {out_path}')
            dist.barrier()
        self._check_ranks_agree(runner, art)
        head.set_anchors(
            art['anchors'],
            art['mask'],
            logit_scale=math.exp(art['meta']['logit_scale']))
        chosen = art['indices'][art['mask']].numpy()
        prompts = int(np.asarray(corpus.is_prompt)[chosen].sum())
        runner.logger.info(
            f'AnSS ({self.selection}, M={self.num_anchors}): chose {prompts} '
            f'prompt and {len(chosen) - prompts} description sentences, '
            f'{int((~art["mask"]).sum())} padded slots')
        self._record = dict(art['meta'], artifact=osp.abspath(out_path))
