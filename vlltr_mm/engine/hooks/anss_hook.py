"""Anchor sentence selection (AnSS, VL-LTR §3.3) as an MMEngine hook."""
import math
import os.path as osp
from typing import Optional

import numpy as np
import torch
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmpretrain.registry import HOOKS

from vlltr_mm.datasets.class_text.class_order import check_class_order

from .anss_artifact import (
    NO_ARTIFACT,
    artifact_key,
    broadcast_artifact,
    check_ranks_agree,
    read_artifact,
    write_artifact,
)
from .anss_checkpoint import (
    load_stage1_logit_scale,
    load_stage1_tower,
    locate_stage1,
)
from .anss_inputs import build_corpus, embed_sentences, text_encoder_cfg
from .anss_pool import build_pool, embed_pool, score_sentences
from .anss_pool_spec import check_pool_spec
from .anss_randomness import preserved_global_rng
from .anss_report import report_path, write_report
from .anss_scoring import select_anchors
from .anss_summary import summary_lines


@HOOKS.register_module()
class AnchorSentenceSelectionHook(Hook):
    """Select the anchor sentences of the LGR head before training.

    Embeds every corpus sentence with the stage-1 (CVLP) text encoder and
    every pool image with the stage-1 image encoder, scores each sentence
    with L_lin (Eq. 2, :func:`.anss_scoring.lin_loss_scores`) and keeps the
    head's ``num_anchors`` (M) best per class; ``selection='cutoff'`` keeps
    the first M instead (Table 4, #7) and skips the pool. Work is split
    across ranks. Rank 0 writes the artifact (:mod:`.anss_artifact`; reused
    while its key matches) and a Markdown report next to it
    (:mod:`.anss_report`: a per-class summary, then every class's kept and
    dropped sentences); a few summary lines go to the log. The global
    random states are left as they were found, so a run that computes the
    anchors trains like one that reuses them. The anchors go into the head
    with :meth:`LGRHead.set_anchors`, so every checkpoint carries them; the
    stage-1 checkpoint path is recorded in saved checkpoints, so a resumed
    run finds it again.

    Args:
        corpus (dict | ClassTextCorpus): Corpus config for ``TASK_UTILS``
            or a built corpus. Without ``class_names`` / ``labels_file`` the
            train dataset's ``metainfo['classes']`` are used.
        text_encoder (dict, optional): Text encoder config; its weights are
            the checkpoint's ``text_encoder.*``. Defaults to None: an
            ``OpenCLIPTextEncoder`` of the backbone's ``model_name``.
        checkpoint (str, optional): Stage-1 checkpoint. Defaults to None:
            the one recorded in a resumed checkpoint, else ``load_from``.
        pool (dict, optional): Image pool options, checked here (see
            :mod:`.anss_pool_spec`): ``split`` (``'val'``, ``'train'`` or
            ``'test'``), ``max_per_class`` (int, or None for the whole
            split), ``mode`` (``'first'`` or ``'random'``), ``draw`` (None:
            each image once; ``'sqrt'``: as many draws with replacement,
            weights ``1 / sqrt(n_c)``), ``pipeline`` (``'val'``,
            ``'train'`` or a list of transforms), ``seed``, optional
            ``dataset``. The authors' iNat pool is ``dict(split='train',
            max_per_class=50, mode='first', draw='sqrt', pipeline='train',
            seed=0)``. Defaults to None: ``dict(split='val',
            max_per_class=50, mode='first', draw=None, pipeline='val',
            seed=0)``.
        selection (str): ``'anss'`` or ``'cutoff'``. Defaults to ``'anss'``.
        batch_size (int): Sentences / images per forward. Defaults to 256.
        num_workers (int): Pool dataloader workers. Defaults to 2.
        chunk_size (int): Sentences per scoring chunk. Defaults to 4096.
        artifact (str, optional): A precomputed artifact to use; it must
            match, else ValueError. Defaults to None.
        out_file (str): Artifact name under the work dir.
            Defaults to ``'anss_anchors.pth'``.
        num_anchors (int, optional): Deprecated: M is the head's
            ``num_anchors``; a value here must equal it. Defaults to None.
    """

    priority = 'VERY_HIGH'

    def __init__(self,
                 corpus,
                 text_encoder: Optional[dict] = None,
                 checkpoint: Optional[str] = None,
                 pool: Optional[dict] = None,
                 selection: str = 'anss',
                 batch_size: int = 256,
                 num_workers: int = 2,
                 chunk_size: int = 4096,
                 artifact: Optional[str] = None,
                 out_file: str = 'anss_anchors.pth',
                 num_anchors: Optional[int] = None):
        if selection not in ('anss', 'cutoff'):
            raise ValueError("selection must be 'anss' or 'cutoff', got "
                             f'{selection!r}')
        self.pool = check_pool_spec(pool)
        self.corpus, self.text_encoder = corpus, text_encoder
        self.checkpoint, self.selection = checkpoint, selection
        self.batch_size, self.num_workers = batch_size, num_workers
        self.chunk_size, self.artifact = chunk_size, artifact
        self.out_file, self.num_anchors = out_file, num_anchors
        self.reused = None  # set by before_train: True if nothing computed
        self._resumed_record = None
        self._record = None

    @property
    def record(self) -> Optional[dict]:
        """The anchors' record (the artifact's meta with its ``artifact``
        and ``report`` paths) once ``before_train`` set them, else None;
        saved as ``meta['anss']`` in every checkpoint."""
        return self._record

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        self._resumed_record = checkpoint.get('meta', {}).get('anss')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._record is not None:
            checkpoint.setdefault('meta', {})['anss'] = dict(self._record)

    def _head(self, model):
        head = getattr(model, 'head', None)
        if not hasattr(head, 'set_anchors'):
            raise TypeError('AnchorSentenceSelectionHook needs a model whose '
                            '`head` has set_anchors() (e.g. LGRHead), got '
                            f'{type(head).__name__}')
        if self.num_anchors not in (None, head.num_anchors):
            raise ValueError(
                f'AnchorSentenceSelectionHook(num_anchors={self.num_anchors}'
                f') differs from model.head.num_anchors={head.num_anchors};'
                " the head's value is used: drop num_anchors from the hook.")
        return head

    def _compute(self, runner, model, corpus, path, text_cfg, pool, m):
        scale = load_stage1_logit_scale(path)
        runner.logger.info(f'AnSS: embedding {corpus.num_sentences} '
                           'sentences')
        text = embed_sentences(text_cfg, path, corpus,
                               next(model.parameters()).device,
                               self.batch_size)
        scores = torch.full((corpus.num_sentences, ), float('nan'))
        if pool is not None:
            runner.logger.info(
                f'AnSS: embedding {len(pool.indices)} pool images')
            images = embed_pool(model, load_stage1_tower(path, 'backbone'),
                                pool, text.shape[1], self.batch_size,
                                self.num_workers)
            scores = score_sentences(text, images, corpus, pool, scale,
                                     self.chunk_size)
        indices, mask = select_anchors(scores, corpus.class_offsets, m,
                                       self.selection)
        return dict(anchors=text[indices.to(text.device)].cpu(),
                    indices=indices, mask=mask, scores=scores,
                    meta=dict(logit_scale=scale, embed_dim=text.shape[1]))

    def before_train(self, runner) -> None:
        # Building towers and random pool transforms draw random numbers;
        # training must not depend on whether the anchors were computed.
        with preserved_global_rng():
            self._select(runner)

    def _select(self, runner) -> None:
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        head = self._head(model)
        m = head.num_anchors
        path = locate_stage1(self.checkpoint, self._resumed_record, runner)
        corpus = build_corpus(self.corpus, runner)
        data = runner.train_dataloader.dataset
        check_class_order(
            data.metainfo['classes'], 'the training data ({})'.format(
                getattr(data, 'classes_source', None) or 'its metainfo'),
            corpus.class_names,
            f'the AnSS corpus ({corpus.class_names_source})')
        if getattr(head, 'num_classes', corpus.num_classes) != \
                corpus.num_classes:
            raise ValueError(
                f'the head has {head.num_classes} classes but the corpus '
                f'({corpus.class_names_source}) has {corpus.num_classes}')
        pool = build_pool(self.pool, runner.cfg, corpus.class_names) \
            if self.selection == 'anss' else None
        text_cfg = text_encoder_cfg(self.text_encoder, model)
        out_path = self.artifact or osp.join(runner.work_dir, self.out_file)
        art, why, key = None, '', None
        if dist.get_rank() == 0:
            key = artifact_key(corpus, path, text_cfg,
                               runner.cfg.get('model') or {}, pool,
                               self.selection, m)
            art, why = read_artifact(out_path, key, self.artifact is not None)
        art, why, key = broadcast_artifact(art, why, key)
        self.reused = art is not None
        if self.reused:
            runner.logger.info(f'AnSS: reusing {out_path}')
        else:
            # A stale artifact deserves a warning, a first run not.
            level = 'info' if why == NO_ARTIFACT else 'warning'
            getattr(runner.logger, level)(f'AnSS: computing anchors ({why})')
            art = self._compute(runner, model, corpus, path, text_cfg, pool,
                                m)
            art['meta'].update(
                key, checkpoint=osp.abspath(path),
                class_names=list(corpus.class_names),
                num_classes=corpus.num_classes,
                num_sentences=corpus.num_sentences,
                num_pool_images=0 if pool is None else len(pool.indices),
                num_pool_distinct_images=0 if pool is None else len(
                    np.unique(pool.indices)))
            if dist.get_rank() == 0:
                write_artifact(out_path, art)
                runner.logger.info(f'AnSS: wrote {out_path}')
        report = report_path(out_path)
        if dist.get_rank() == 0 and not (self.reused and osp.isfile(report)):
            write_report(report, art, corpus)
            runner.logger.info(f'AnSS: per-class report {report}')
        dist.barrier()
        check_ranks_agree(art, runner.logger)
        head.set_anchors(art['anchors'], art['mask'],
                         logit_scale=math.exp(art['meta']['logit_scale']))
        for line in summary_lines(art, corpus):
            runner.logger.info(line)
        self._record = dict(art['meta'], artifact=osp.abspath(out_path),
                            report=osp.abspath(report))
        # Class names stay in the artifact, not in every checkpoint.
        self._record.pop('class_names', None)
