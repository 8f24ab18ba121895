"""Dataset wrapper adding one class sentence to every image (paper §3.2)."""
import copy
import os.path as osp
import random
from typing import Optional, Union

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.logging import MessageHub
from mmpretrain.registry import DATASETS, TASK_UTILS
from torch.utils.data import get_worker_info

from .class_order import check_class_order
from .corpus import ClassTextCorpus


@DATASETS.register_module()
class ClassTextDataset:
    """Wrap a classification dataset so that items carry class text.

    Every access of item ``i`` returns the inner item plus ``'text_tokens'``
    (int64 ``[context_length]``): the tokens of one sentence drawn uniformly
    from the item's class, and ``'text_index'`` (int): that sentence's row in
    the corpus, drawn afresh on each access (CVLP samples a new
    sentence per image per iteration).

    Randomness lives in the process that runs ``__getitem__``, i.e. inside
    dataloader workers. Each process seeds its own generator on first use
    from the DataLoader's per-worker seed (fresh every epoch, drawn from the
    main process's torch RNG), ``torch.initial_seed()`` (set per worker and
    rank by MMEngine's ``worker_init_fn``), the rank and ``seed``; the main
    process (``num_workers=0``) re-seeds each epoch from the runner's epoch
    instead of a worker seed, so ``--resume`` repeats its draws. Under
    MMEngine's ``randomness.seed`` the draws are therefore reproducible,
    differ between workers, ranks and epochs, and do not consume the global
    RNG streams that augmentations use.

    Args:
        dataset (dict | Dataset): The image dataset or its config. Must
            implement ``get_gt_labels()``.
        corpus (dict | ClassTextCorpus): The corpus or its config (built in
            ``TASK_UTILS``). A config without ``class_names`` and
            ``labels_file`` takes ``dataset.metainfo['classes']``; other
            corpora must name the dataset's classes in its order (see
            :func:`~.class_order.check_class_order`).
        seed (int, optional): Extra entropy for the sentence draws. Defaults
            to None.
        lazy_init (bool): Defer ``dataset.full_init()`` (needed for labels)
            until first use. Defaults to False.
    """

    def __init__(self,
                 dataset: Union[dict, object],
                 corpus: Union[dict, ClassTextCorpus],
                 seed: Optional[int] = None,
                 lazy_init: bool = False) -> None:
        self.dataset = (DATASETS.build(dataset)
                        if isinstance(dataset, dict) else dataset)
        self.seed = seed
        classes = self._dataset_classes()
        if isinstance(corpus, dict):
            corpus = dict(corpus)
            if (corpus.get('class_names') is None
                    and corpus.get('labels_file') is None):
                if classes is None:
                    raise ValueError(
                        'the corpus config has no class_names/labels_file '
                        "and the dataset's metainfo has no 'classes'")
                corpus['class_names'] = list(classes)
            corpus.setdefault('type', 'ClassTextCorpus')
            corpus = TASK_UTILS.build(corpus)
        self.corpus: ClassTextCorpus = corpus
        if classes is not None:
            self._check_class_order(classes)
        self._starts = corpus.class_offsets[:-1].tolist()
        self._counts = corpus.class_sentence_counts.tolist()
        self._rng: Optional[random.Random] = None
        self._rng_owner = None
        self._fully_initialized = False
        if not lazy_init:
            self.full_init()

    def _dataset_classes(self):
        classes = getattr(self.dataset, 'metainfo', {}).get('classes')
        if classes is None and hasattr(self.dataset, 'full_init'):
            # Some datasets infer class names from their annotations.
            self.dataset.full_init()
            classes = self.dataset.metainfo.get('classes')
        return classes

    def _check_class_order(self, classes) -> None:
        # Both name lists meet here once, before any sentence is drawn.
        source = getattr(self.dataset, 'classes_source', None)
        names = getattr(self.corpus, 'class_names_source', 'class_names')
        check_class_order(
            classes, 'the dataset ({})'.format(
                source or f"{type(self.dataset).__name__}.metainfo"),
            self.corpus.class_names, 'the corpus ({})'.format(
                'its class_names' if names == 'class_names' else names),
            source if source and osp.isfile(source) else None)

    def full_init(self) -> None:
        """Initialise the inner dataset and cache its labels."""
        if self._fully_initialized:
            return
        if hasattr(self.dataset, 'full_init'):
            self.dataset.full_init()
        labels = np.asarray(self.dataset.get_gt_labels(), dtype=np.int64)
        if labels.size and (labels.min() < 0
                            or labels.max() >= self.corpus.num_classes):
            raise ValueError(
                f'dataset labels span [{labels.min()}, {labels.max()}] but '
                f'the corpus has {self.corpus.num_classes} classes')
        self._gt_labels = labels
        self._labels = labels.tolist()
        self._fully_initialized = True

    @property
    def metainfo(self) -> dict:
        """The inner dataset's meta information (a copy)."""
        return copy.deepcopy(getattr(self.dataset, 'metainfo', {}))

    @property
    def pipeline(self):
        """The inner dataset's pipeline (what stock tools such as
        ``browse_dataset`` inspect and replace); the sentence is added
        after it."""
        return self.dataset.pipeline

    @pipeline.setter
    def pipeline(self, pipeline) -> None:
        self.dataset.pipeline = pipeline

    @property
    def class_counts(self) -> np.ndarray:
        """Images per class in this split, int64 ``[C]``."""
        self.full_init()
        return np.bincount(self._gt_labels,
                           minlength=self.corpus.num_classes)

    def get_gt_labels(self) -> np.ndarray:
        """Labels of all items, int64 ``[N]`` (for samplers and metrics)."""
        self.full_init()
        return self._gt_labels.copy()

    def get_cat_ids(self, idx: int) -> list:
        self.full_init()
        return [self._labels[idx]]

    def __len__(self) -> int:
        self.full_init()
        return len(self._labels)

    def _generator(self) -> random.Random:
        info = get_worker_info()
        owner = info
        if info is None:
            # Main process (num_workers=0): nothing re-seeds it per epoch
            # and a private stream is not in checkpoints, so key it on the
            # runner's epoch (MessageHub, restored by --resume); a resumed
            # epoch then draws what the uninterrupted one did.
            owner = MessageHub.get_current_instance().get_info('epoch')
        if self._rng is None or owner != self._rng_owner:
            entropy = [get_rank(), torch.initial_seed()]
            if info is not None:
                entropy += [info.id, info.seed]
            elif owner is not None:
                entropy.append(int(owner))
            if self.seed is not None:
                entropy.append(int(self.seed))
            seq = np.random.SeedSequence(entropy)
            self._rng = random.Random(
                int.from_bytes(seq.generate_state(4).tobytes(), 'little'))
            self._rng_owner = owner
        return self._rng

    def _label_of(self, item, idx: int) -> int:
        # The inner dataset may refetch another index when its pipeline
        # drops a sample, so the packed label beats the annotation label.
        if isinstance(item, dict):
            sample = item.get('data_samples')
            gt = (item.get('gt_label') if sample is None else getattr(
                sample, 'gt_label', None))
            if gt is not None:
                return int(gt)
        return self._labels[idx]

    def __getitem__(self, idx: int) -> dict:
        self.full_init()
        item = self.dataset[idx]
        label = self._label_of(item, idx)
        sentence = (self._starts[label] +
                    self._generator().randrange(self._counts[label]))
        out = dict(item)
        out['text_tokens'] = self.corpus.tokens.row(sentence)
        out['text_index'] = sentence
        return out

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        # A copy in a spawned worker must reseed, not replay our stream.
        state['_rng'] = state['_rng_owner'] = None
        return state

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(dataset={type(self.dataset).__name__}'
                f', num_items={len(self)}, corpus={self.corpus!r})')
