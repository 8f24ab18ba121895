"""Top-k accuracy with the many / medium / few-shot split of long-tailed
recognition (VL-LTR §4.2)."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmpretrain.registry import METRICS

from vlltr_mm.datasets.annotation_io import count_classes_from_file
from vlltr_mm.models.utils.class_prior import check_class_counts

from .branch_predictions import branches_of, extra_top1, top1_hits
from .long_tail_groups import GROUP_RULES, score_groups, split_classes
from .per_class_report import check_per_class_file, write_per_class_file


@METRICS.register_module()
class LongTailAccuracy(BaseMetric):
    """Overall top-k accuracy plus many-, medium- and few-shot accuracy.

    Classes are split by their number of *training* images ``n``: many-shot
    when ``n >= many_threshold`` (``n > many_threshold`` if
    ``many_inclusive=False``), few-shot when ``n <= few_threshold``
    (``n < few_threshold`` if ``few_inclusive=False``), medium-shot
    otherwise. The defaults are the paper's (many >= 100, few <= 20); the
    OLTR / decoupling code uses the exclusive form.

    ``group_rule`` says how the groups are scored:

    * ``'consistent'``: from the same top-1 prediction as
      ``accuracy/top1``; a group's accuracy is the accuracy of each of its
      classes present in the evaluation set, averaged over those classes
      (on the balanced test sets of the LT benchmarks this equals the
      accuracy over the group's samples).
    * ``'authors'``: as the authors' evaluation (``shot_acc`` in their
      ``engine.py``): from ``argmax(logits_image + logits_text)`` of the
      raw LGR logits (``pred_label_logit_sum`` of ``LGRHead.predict``: no
      softmax, no ``alpha``, no post-hoc adjustment), averaged over the
      group's *samples*; classes without training images are in no group.
      The overall top-k stays the fused score's.

    A group without evaluation samples scores NaN. All values are in %.

    Like MMPretrain's ``Accuracy``, :meth:`process` reads ``pred_score``
    (or, failing that, ``pred_label``) and ``gt_label`` of each data sample.
    Only the top-``max(topk)`` class indices of each sample are kept (plus
    the top-1 of each branch and the logit-sum label, see below), not the
    full score vectors.

    Results, with the default prefix: ``accuracy/top{k}`` for each ``k`` in
    ``topk``, ``accuracy/many``, ``accuracy/medium``, ``accuracy/few`` and,
    if ``per_class``, ``accuracy/per_class``: a list of ``num_classes``
    floats, NaN for classes absent from the evaluation set, from the
    predictions the groups use. When the samples carry
    ``pred_score_image`` and ``pred_score_text`` (``LGRHead``), each
    branch alone also gets ``accuracy/top1_{branch}`` and
    ``accuracy/{group}_{branch}`` (averaged as ``group_rule`` says), for
    ``branch`` in ``image``, ``text``.

    Args:
        topk (int | Sequence[int]): The k of the top-k accuracies.
            Defaults to ``(1, )``.
        many_threshold (int): Training count bounding many-shot classes.
            Defaults to 100.
        few_threshold (int): Training count bounding few-shot classes.
            Defaults to 20.
        many_inclusive (bool): Whether a class with exactly
            ``many_threshold`` training images is many-shot.
            Defaults to True.
        few_inclusive (bool): Whether a class with exactly
            ``few_threshold`` training images is few-shot. Defaults to True.
        class_counts (Sequence[int], optional): Training images per class,
            shape ``[num_classes]``. Defaults to None.
        train_ann_file (str, optional): Training annotation file to count
            the classes from instead of ``class_counts``. With neither,
            ``ClassPriorHook`` sets the counts from the training dataset
            (in training) or from the model's checkpointed prior (in
            ``tools/test.py``). Defaults to None.
        num_classes (int, optional): Number of classes: counting from
            ``train_ann_file`` keeps trailing classes without training
            images, and counts set later must have this length.
            Defaults to None.
        per_class (bool): Whether to add the per-class accuracy list.
            Defaults to False.
        group_rule (str): ``'consistent'`` or ``'authors'``, see above.
            Defaults to ``'consistent'``.
        per_class_file (str, optional): A ``.json`` file to write, after
            every evaluation (on rank 0), with each class's name (from
            ``dataset_meta['classes']``), training count, group, number of
            evaluation samples and accuracy (and branch accuracies); a
            relative path is under the runner's log directory
            ``work_dir/<timestamp>/``. Defaults to None (no file).
        collect_device (str): Device for gathering results across ranks,
            ``'cpu'`` or ``'gpu'``. Defaults to ``'cpu'``.
        prefix (str, optional): Prefix of the result names.
            Defaults to ``'accuracy'``.
        collect_dir (str, optional): Shared directory for gathering results
            on ``'cpu'``. Defaults to None.
    """
    default_prefix: Optional[str] = 'accuracy'

    def __init__(self,
                 topk: Union[int, Sequence[int]] = (1, ),
                 many_threshold: int = 100,
                 few_threshold: int = 20,
                 many_inclusive: bool = True,
                 few_inclusive: bool = True,
                 class_counts: Optional[Sequence[int]] = None,
                 train_ann_file: Optional[str] = None,
                 num_classes: Optional[int] = None,
                 per_class: bool = False,
                 group_rule: str = 'consistent',
                 per_class_file: Optional[str] = None,
                 collect_device: str = 'cpu',
                 prefix: Optional[str] = 'accuracy',
                 collect_dir: Optional[str] = None) -> None:
        super().__init__(
            collect_device=collect_device,
            prefix=prefix,
            collect_dir=collect_dir)
        self.topk = (topk, ) if isinstance(topk, int) else tuple(topk)
        if not self.topk or any(
                not isinstance(k, (int, np.integer)) or k < 1
                for k in self.topk):
            raise ValueError(
                f'topk must be positive integers, got {topk!r}.')
        self.maxk = max(self.topk)
        if group_rule not in GROUP_RULES:
            raise ValueError(f'group_rule must be one of {GROUP_RULES}, got '
                             f'{group_rule!r}')
        self.group_rule = group_rule
        self.per_class_file = check_per_class_file(per_class_file)

        if class_counts is not None and train_ann_file is not None:
            raise ValueError('Give at most one of class_counts and '
                             'train_ann_file to split the classes.')
        if train_ann_file is not None:
            class_counts = count_classes_from_file(train_ann_file,
                                                   num_classes)
        if few_threshold > many_threshold or (
                few_threshold == many_threshold and many_inclusive
                and few_inclusive):
            raise ValueError(
                f'few_threshold ({few_threshold}) and many_threshold '
                f'({many_threshold}) make the few- and many-shot groups '
                'overlap.')
        self._thresholds = (many_threshold, few_threshold, many_inclusive,
                            few_inclusive, group_rule)
        self.per_class = per_class
        self.explicit = class_counts is not None
        self.class_counts = None
        self.num_classes = self._expected_classes = num_classes
        if class_counts is not None:
            self.set_class_counts(class_counts)

    def set_class_counts(self, class_counts) -> None:
        """Set the training counts [C] that split the classes into many /
        medium / few (called by ``ClassPriorHook``)."""
        counts = check_class_counts(class_counts, self._expected_classes,
                                    name='class_counts')
        if self.maxk > len(counts):
            raise ValueError(f'top-{self.maxk} accuracy needs at least '
                             f'{self.maxk} classes, class_counts has '
                             f'{len(counts)}; lower topk.')
        self.class_counts = counts
        self.num_classes = len(counts)
        # [num_classes] bool masks, one per group.
        self.group_masks = split_classes(counts, *self._thresholds)

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        """Keep the top-k predicted classes and the label of each sample.

        Args:
            data_batch: A batch from the dataloader (unused).
            data_samples (Sequence[dict]): Model outputs with ``gt_label``
                and ``pred_score`` (shape ``[num_classes]``) or
                ``pred_label``; optionally ``pred_score_image`` and
                ``pred_score_text``; ``pred_label_logit_sum`` for
                ``group_rule='authors'``.
        """
        if self.class_counts is None:
            raise RuntimeError(
                'LongTailAccuracy has no training class counts to split the '
                'classes into many / medium / few. Add '
                "`dict(type='ClassPriorHook')` to `custom_hooks` (it takes "
                'them from the training dataset, or from the prior saved in '
                'the checkpoint), or give `class_counts` or '
                '`train_ann_file`.')
        # Labels are checked once, in compute_metrics.
        gt = [
            torch.as_tensor(s.get('gt_label')).reshape(-1).cpu()
            for s in data_samples
        ]
        if 'pred_score' in data_samples[0]:
            # [B, C'] -> [B, maxk]
            scores = torch.stack([s.get('pred_score') for s in data_samples])
            # The model's class count is only known from its outputs.
            if scores.shape[1] > self.num_classes:
                raise ValueError(
                    f'Predictions have {scores.shape[1]} classes but '
                    f'class_counts only {self.num_classes}.')
            pred = scores.topk(self.maxk, dim=1).indices.cpu()
        else:
            if self.maxk > 1:
                raise ValueError(f'top-{self.maxk} accuracy needs '
                                 'pred_score; the samples only have '
                                 'pred_label.')
            pred = torch.stack([
                torch.as_tensor(s.get('pred_label')).reshape(-1)[:1]
                for s in data_samples
            ]).cpu()
        # One int per sample for each branch and the authors' groups.
        extra = extra_top1(data_samples, self.group_rule == 'authors')
        # One entry per sample: MMEngine drops the padding of the
        # distributed sampler by truncating the gathered list to the
        # dataset size.
        self.results.extend(
            dict(pred_topk=p, gt_label=g,
                 **{key: v[i] for key, v in extra.items()})
            for i, (p, g) in enumerate(zip(pred.unbind(0), gt)))

    def compute_metrics(self, results: List[dict]) -> dict:
        """Compute the accuracies from all gathered samples.

        Args:
            results (list[dict]): Entries made by :meth:`process`.

        Returns:
            dict: Accuracy values in %, keyed as described in the class
            docstring (without the prefix).
        """
        gt = torch.cat([r['gt_label'] for r in results])  # [N]
        pred = torch.stack([r['pred_topk'] for r in results])  # [N, maxk]
        if gt.numel() != pred.shape[0]:
            raise ValueError('LongTailAccuracy needs a single gt_label per '
                             'sample.')
        top = int(torch.maximum(gt.max(), pred.max()))
        if top >= self.num_classes or int(gt.min()) < 0:
            raise ValueError(
                f'gt_label or prediction out of range for the '
                f'{self.num_classes} classes of class_counts (largest '
                f'index {top}); make class_counts / num_classes match '
                'the dataset.')
        correct = pred == gt[:, None]  # [N, maxk]
        metrics = {}
        for k in self.topk:
            acc = correct[:, :k].any(dim=1).double().mean() * 100
            metrics[f'top{k}'] = acc.item()

        support = torch.bincount(gt, minlength=self.num_classes).double()
        hit = correct[:, 0]
        if self.group_rule == 'authors':
            hit = top1_hits(results, 'pred_logit_sum', gt)
        # [num_classes], NaN where a class has no evaluation sample.
        class_acc = {}
        class_acc['accuracy'], groups = score_groups(
            hit, gt, support, self.group_masks, self.group_rule)
        metrics.update(groups)
        for b in branches_of(results):
            hit = top1_hits(results, f'pred_{b}', gt)
            metrics[f'top1_{b}'] = hit.double().mean().item() * 100
            class_acc[f'accuracy_{b}'], groups = score_groups(
                hit, gt, support, self.group_masks, self.group_rule)
            metrics.update({f'{k}_{b}': v for k, v in groups.items()})
        if self.per_class:
            metrics['per_class'] = class_acc['accuracy'].tolist()
        if self.per_class_file is not None:
            # compute_metrics runs on rank 0 only: one writer.
            scalars = {f'{self.prefix}/{k}': v
                       for k, v in metrics.items() if k != 'per_class'}
            write_per_class_file(
                self.per_class_file, self.dataset_meta, self.class_counts,
                self.group_masks, support, class_acc, self.group_rule,
                scalars)
        return metrics
