"""Hand the training set's per-class counts to every part that needs them.

Logit-adjusted losses, post-hoc adjusted heads and ``LongTailAccuracy``
need the training label distribution. Typing it into a config is error
prone, and the datasets already know it, so this hook reads it from the
training dataset before the first iteration and sets it on every module
with ``set_class_counts`` and on every evaluator metric that has one. The
model keeps the counts in its state dict; in ``tools/test.py`` (no training
dataset) the hook hands the checkpoint's counts to the metrics instead.
"""
from typing import Optional

import numpy as np
from mmengine import dist
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.runner import BaseLoop
from mmpretrain.registry import HOOKS

from vlltr_mm.models.utils.class_prior import ClassPrior


def dataset_class_counts(dataset) -> np.ndarray:
    """Images per class [C] of a (possibly wrapped) dataset.

    Uses ``class_counts`` where a dataset provides it (ours do), else counts
    ``get_gt_labels()`` over ``metainfo['classes']`` (stock MMPretrain
    datasets); wrappers with a ``dataset`` attribute are unwrapped.

    Args:
        dataset: A dataset object.

    Returns:
        np.ndarray: int64 counts [C].
    """
    seen = dataset
    while True:
        counts = getattr(seen, 'class_counts', None)
        if counts is not None:
            return np.asarray(counts, dtype=np.int64)
        if hasattr(seen, 'get_gt_labels'):
            labels = np.asarray(seen.get_gt_labels(), dtype=np.int64)
            classes = (getattr(seen, 'metainfo', None) or {}).get('classes')
            size = len(classes) if classes else int(labels.max()) + 1
            return np.bincount(labels, minlength=size).astype(np.int64)
        if not hasattr(seen, 'dataset'):
            raise TypeError(
                f'cannot count the classes of {type(dataset).__name__}: it '
                'has neither `class_counts` nor `get_gt_labels()`; give '
                '`class_counts=[...]` in the config instead')
        seen = seen.dataset


@HOOKS.register_module()
class ClassPriorHook(Hook):
    """Set the training class counts on the model and the metrics.

    ``before_train`` (and already ``before_run`` of a training run, so that
    model copies such as EMAHook's get them too): counts from
    ``runner.train_dataloader.dataset`` (rank 0's, broadcast so every rank
    agrees) are set on each model module with a ``set_class_counts``
    method whose prior was not given explicitly in the config.
    ``before_val`` / ``before_test``: metrics with a ``set_class_counts``
    method and no explicit counts get the training counts, or, without a
    training dataset, the counts saved in the model.

    Args:
        override_explicit (bool): Also replace counts given in the config.
            Defaults to False.
    """

    priority = 'VERY_HIGH'

    def __init__(self, override_explicit: bool = False):
        self.override_explicit = override_explicit
        self.counts: Optional[np.ndarray] = None

    @staticmethod
    def _model(runner):
        model = runner.model
        return model.module if is_model_wrapper(model) else model

    def _wants(self, obj) -> bool:
        explicit = getattr(obj, 'explicit', None)
        prior = getattr(obj, 'class_prior', None)
        if isinstance(prior, ClassPrior):
            explicit = prior.explicit
        return self.override_explicit or not explicit

    def before_run(self, runner) -> None:
        # In a training run the train loop and its dataloader exist before
        # `before_run`. Set the counts already here, ahead of hooks that
        # copy the model here (EMAHook's averaged copy would otherwise keep
        # the empty buffer, which its updates cannot copy [C] counts
        # into); before_train sets them again after load_from / resume.
        if isinstance(getattr(runner, '_train_loop', None), BaseLoop):
            self._set_model(runner, log=False)

    def before_train(self, runner) -> None:
        self._set_model(runner, log=True)

    def _set_model(self, runner, log: bool) -> None:
        counts = [None]
        if dist.get_rank() == 0:
            counts[0] = dataset_class_counts(runner.train_dataloader.dataset)
        dist.broadcast_object_list(counts, src=0)
        self.counts = counts[0]
        names = []
        for name, module in self._model(runner).named_modules():
            if hasattr(module, 'set_class_counts') and self._wants(module):
                module.set_class_counts(self.counts)
                names.append(name or 'model')
        if not log:
            return
        c = self.counts
        runner.logger.info(
            f'ClassPriorHook: training set has {c.size} classes, '
            f'{int(c.min())}..{int(c.max())} images per class; set on '
            f'{", ".join(names) or "no model module"}')

    def _model_counts(self, runner) -> Optional[np.ndarray]:
        for module in self._model(runner).modules():
            if isinstance(module, ClassPrior) and module.is_set:
                return module.counts.cpu().numpy()
        return None

    def _set_metrics(self, runner, evaluator) -> None:
        metrics = [
            m for m in getattr(evaluator, 'metrics', [])
            if hasattr(m, 'set_class_counts') and self._wants(m)
        ]
        if not metrics:
            return
        counts, source = self.counts, 'the training set'
        if counts is None:
            counts, source = self._model_counts(runner), 'the checkpoint'
        if counts is None:
            return  # the metric raises its own error naming the fix
        for metric in metrics:
            metric.set_class_counts(counts)
        runner.logger.info(
            f'ClassPriorHook: class counts from {source} set on '
            f'{", ".join(type(m).__name__ for m in metrics)}')

    def before_val(self, runner) -> None:
        self._set_metrics(runner, runner.val_evaluator)

    def before_test(self, runner) -> None:
        self._set_metrics(runner, runner.test_evaluator)
