"""The per-class JSON file of :class:`~.LongTailAccuracy`
(``per_class_file``): class name, training count, group and accuracy of
every class, one file per evaluation."""
import json
import logging
import math
import os.path as osp
from typing import Dict, Optional

import numpy as np
import torch
from mmengine.logging import MMLogger, print_log

from vlltr_mm.utils.files import atomic_write


def check_per_class_file(path: Optional[str]) -> Optional[str]:
    """Validate the ``per_class_file`` option at construction.

    Args:
        path (str, optional): The option's value.

    Returns:
        str | None: ``path`` unchanged.
    """
    if path is not None and not (isinstance(path, str)
                                 and path.endswith('.json')):
        raise ValueError(f'per_class_file must be None or a path ending in '
                         f"'.json', got {path!r}")
    return path


def resolve_per_class_file(path: str) -> str:
    """Where ``per_class_file`` goes: an absolute path as given, a relative
    one under the runner's log directory (``work_dir/<timestamp>/``).

    MMEngine gives a metric no handle on the runner; the runner's logger,
    the current :class:`MMLogger`, writes its log file in that directory
    (runners built in one process in the same second, without a config
    or ``experiment_name``, share the first one's logger and log file).
    Without a logging runner (a metric used on its own) the path is
    relative to the current directory.

    Args:
        path (str): The ``per_class_file`` option.

    Returns:
        str: The file to write.
    """
    if osp.isabs(path):
        return path
    log_file = MMLogger.get_current_instance().log_file
    return osp.join(osp.dirname(log_file), path) if log_file else path


def class_names(dataset_meta: Optional[dict],
                num_classes: int) -> Optional[list]:
    """The evaluated dataset's class names (``dataset_meta['classes']``,
    set by MMEngine's ``Evaluator``), or None where it has none.

    Raises:
        ValueError: If their number is not ``num_classes``.
    """
    names = (dataset_meta or {}).get('classes')
    if names is None:
        print_log(
            "LongTailAccuracy: the dataset has no metainfo['classes']; the "
            'per-class file has no class names.',
            logger='current', level=logging.WARNING)
        return None
    if len(names) != num_classes:
        raise ValueError(
            f"LongTailAccuracy: dataset_meta['classes'] has {len(names)} "
            f'names but the class counts have {num_classes} classes; make '
            'the dataset and the class counts (num_classes, '
            'train_ann_file, ClassPriorHook) describe the same classes.')
    return [str(n) for n in names]


def _number(value: float) -> Optional[float]:
    # JSON has no NaN: a class without evaluation samples gets null.
    return None if math.isnan(value) else value


def write_per_class_file(path: str, dataset_meta: Optional[dict],
                         counts: np.ndarray, groups: Dict[str, torch.Tensor],
                         eval_counts: torch.Tensor,
                         accuracies: Dict[str, torch.Tensor],
                         group_rule: str, metrics: Dict[str, float]) -> str:
    """Write the per-class JSON file atomically.

    The file holds ``group_rule``, ``metrics`` (NaN as null) and
    ``classes``: one entry per class with ``index``, ``name`` (null if the
    dataset has no class names), ``train_count``, ``group`` (``'many'``,
    ``'medium'``, ``'few'`` or null), ``eval_count`` and each accuracy of
    ``accuracies`` in % (null if the class has no evaluation sample).

    Args:
        path (str): The ``per_class_file`` option (see
            :func:`resolve_per_class_file`).
        dataset_meta (dict, optional): The metric's ``dataset_meta``; the
            class names come from its ``classes``.
        counts (ndarray): Training counts [C].
        groups (dict[str, Tensor]): Bool masks [C] by group name.
        eval_counts (Tensor): Evaluation samples per class [C].
        accuracies (dict[str, Tensor]): Per-class accuracies [C] in %, NaN
            for absent classes, by output key (e.g. ``'accuracy'``).
        group_rule (str): The metric's ``group_rule``.
        metrics (dict[str, float]): The scalar results, prefixed.

    Returns:
        str: The path written.
    """
    names = class_names(dataset_meta, len(counts))
    path = resolve_per_class_file(path)
    group_of = [None] * len(counts)
    for name, mask in groups.items():
        for index in mask.nonzero().flatten().tolist():
            group_of[index] = name
    columns = {key: acc.tolist() for key, acc in accuracies.items()}
    rows = [
        dict(index=c, name=None if names is None else names[c],
             train_count=int(counts[c]), group=group_of[c],
             eval_count=int(eval_counts[c]),
             **{key: _number(col[c]) for key, col in columns.items()})
        for c in range(len(counts))
    ]
    data = dict(group_rule=group_rule,
                metrics={k: _number(v) for k, v in metrics.items()},
                classes=rows)
    with atomic_write(path, 'w') as f:
        json.dump(data, f, indent=1, allow_nan=False)
    print_log(f'Per-class accuracy written to {path}', logger='current')
    return path
