"""Dataset of the ImageNet-LT / Places-LT ``relative/path label`` lists."""
import os.path as osp
import posixpath
from collections import defaultdict
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.fileio import get_file_backend, join_path
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .annotation_io import (
    check_label_range,
    read_class_names,
    read_inat_categories,
    read_list_annotations,
)


@DATASETS.register_module()
class LongTailListDataset(BaseDataset):
    """Long-tailed classification dataset read from a list file.

    Reads the list files of ImageNet-LT and Places-LT (paper §4.1), e.g.
    ``ImageNet_LT_train.txt`` with lines such as
    ``train/n01440764/n01440764_190.JPEG 0``. Image paths are relative to
    ``data_root/data_prefix``; ``ann_file`` is relative to ``data_root``.

    Every problem of the annotation (line without label, non-integer or
    negative label, label ``>= num_classes``, missing image file) raises an
    error whose message starts with ``"<ann_file>:<line>:"``.

    Class names, in order of preference: ``metainfo['classes']``,
    ``classes``, else inferred from the folder of each class's first image:
    its parent folder (``train/n01440764/x.JPEG`` -> ``'n01440764'``,
    ``data_256/a/airfield/x.jpg`` -> ``'airfield'``), extended by more
    folder levels only where parent folders clash (Places365's
    ``.../apartment_building/outdoor`` -> ``'apartment_building/outdoor'``).
    Lists whose images do not sit in class folders (Places-LT's flat
    ``val_256/``) need ``classes``.

    Args:
        ann_file (str): List file, relative to ``data_root`` unless
            absolute.
        data_root (str): Root of ``ann_file``, ``data_prefix`` and a
            relative ``classes`` file. Defaults to ''.
        data_prefix (str | dict): Image folder below ``data_root``.
            Defaults to ''.
        classes (str | Sequence[str], optional): Class names, or the path of
            a labels file with one name per line, or of a ``.json`` list of
            ``{"id", "name"}`` categories (names taken in id order). A
            relative path is relative to ``data_root``, like ``ann_file``.
            Defaults to None (inferred from image folders).
        num_classes (int, optional): Number of classes C; labels must be
            below it and it must agree with ``classes``. Defaults to None
            (``len(classes)``, else ``max(label) + 1``).
        check_files (bool): Check that every listed image exists on the
            local file system when the annotation is loaded. Defaults to
            True.
        pipeline (Sequence): Processing pipeline. Defaults to ().
        test_mode (bool): Whether the dataset is used for testing.
            Defaults to False.
        lazy_init (bool): Defer reading the annotation to the first access.
            Defaults to False.
        metainfo (dict, optional): Meta information; its ``'classes'`` wins
            over ``classes``. Defaults to None.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``indices``, ``serialize_data``, ``max_refetch`` ...).
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 classes: Union[str, Sequence[str], None] = None,
                 num_classes: Optional[int] = None,
                 check_files: bool = True,
                 pipeline: Sequence = (),
                 test_mode: bool = False,
                 lazy_init: bool = False,
                 metainfo: Optional[dict] = None,
                 **kwargs):
        if num_classes is not None and (not isinstance(num_classes, int)
                                        or num_classes <= 0):
            raise ValueError(
                f'num_classes must be a positive int, got {num_classes!r}')
        self.num_classes = num_classes
        self.check_files = check_files
        self._gt_labels: Optional[np.ndarray] = None
        if isinstance(classes, str):
            path = osp.expanduser(classes)
            if data_root and not osp.isabs(path):
                path = join_path(data_root, path)
            classes = (read_inat_categories(path)
                       if path.lower().endswith('.json') else
                       read_class_names(path))
        elif classes is not None:
            classes = [str(name) for name in classes]
            if len(set(classes)) != len(classes):
                raise ValueError('classes contains repeated names')
        super().__init__(
            ann_file=ann_file,
            metainfo=metainfo,
            data_root=data_root,
            data_prefix=data_prefix,
            pipeline=pipeline,
            test_mode=test_mode,
            lazy_init=lazy_init,
            classes=classes,
            **kwargs)

    def load_data_list(self) -> List[dict]:
        """Read the list file into ``[{'img_path', 'gt_label'}, ...]``."""
        records = read_list_annotations(self.ann_file)
        rel_paths = [record[0] for record in records]
        labels = np.fromiter((record[1] for record in records), np.int64,
                             len(records))

        def locate(i: int) -> str:
            return f'{self.ann_file}:{records[i][2]}'

        num_classes = self._resolve_num_classes(labels, locate)
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(
                self._infer_class_names(rel_paths, labels, num_classes,
                                        locate))
        return self._make_data_list(rel_paths, labels, locate)

    def _resolve_num_classes(self,
                             labels: np.ndarray,
                             locate: Callable[[int], str],
                             from_file: Optional[int] = None) -> int:
        """Reconcile every source of C and check the labels against it."""
        sources = {}
        if self.num_classes is not None:
            sources['num_classes'] = self.num_classes
        if self._metainfo.get('classes') is not None:
            sources['len(classes)'] = len(self._metainfo['classes'])
        if from_file is not None:
            sources[f'categories in {self.ann_file}'] = from_file
        if len(set(sources.values())) > 1:
            found = ', '.join(f'{k}={v}' for k, v in sources.items())
            raise ValueError(f'{self.ann_file}: inconsistent number of '
                             f'classes: {found}')
        num_classes = (next(iter(sources.values()))
                       if sources else int(labels.max()) + 1)
        check_label_range(labels, num_classes, locate)
        return num_classes

    def _infer_class_names(self, rel_paths: List[str], labels: np.ndarray,
                           num_classes: int,
                           locate: Callable[[int], str]) -> List[str]:
        """Name each class after the folder of its first image."""
        present, first = np.unique(labels, return_index=True)
        if len(present) < num_classes:
            missing = np.setdiff1d(np.arange(num_classes), present)
            raise ValueError(
                f'{self.ann_file}: cannot infer class names: class '
                f'{missing[0]} has no image ({missing.size} classes missing); '
                'pass `classes`')
        dirs = [[part for part in posixpath.dirname(rel_paths[i]).split('/')
                 if part] for i in first]
        for c, parts in enumerate(dirs):
            if not parts:
                raise ValueError(
                    f'{locate(first[c])}: cannot infer the name of class {c}'
                    f' from {rel_paths[first[c]]!r} (not in a class folder); '
                    'pass `classes`')
        # Grow a name by one folder level only where names clash, so that
        # Places365's '<scene>/indoor' and '<scene>/outdoor' stay distinct.
        depth = [1] * num_classes
        while True:
            names = ['/'.join(p[-k:]) for p, k in zip(dirs, depth)]
            groups = defaultdict(list)
            for c, name in enumerate(names):
                groups[name].append(c)
            clashes = [g for g in groups.values() if len(g) > 1]
            if not clashes:
                return names
            grown = False
            for c in (c for group in clashes for c in group):
                if depth[c] < len(dirs[c]):
                    depth[c] += 1
                    grown = True
            if not grown:
                a, b = clashes[0][:2]
                raise ValueError(
                    f'{locate(first[b])}: classes {a} and {b} both live in '
                    f'folder {names[a]!r} (first image of class {a} at '
                    f'{locate(first[a])}); cannot infer class names from '
                    'folders, pass `classes` (names or a labels file)')

    def _make_data_list(self, rel_paths: List[str], labels: np.ndarray,
                        locate: Callable[[int], str]) -> List[dict]:
        """Join image paths with the prefix and optionally check them."""
        # One backend lookup, not one per image (join_path does one each).
        join = get_file_backend(self.img_prefix,
                                enable_singleton=True).join_path
        paths = [join(self.img_prefix, p) for p in rel_paths]
        if self.check_files:
            exists = np.fromiter(map(osp.exists, paths), bool, len(paths))
            if not exists.all():
                missing = np.flatnonzero(~exists)
                i = int(missing[0])
                raise FileNotFoundError(
                    f'{locate(i)}: image file {paths[i]!r} does not exist '
                    f'({missing.size} of {len(paths)} listed images are '
                    'missing; check data_root / data_prefix, or set '
                    'check_files=False)')
        return [
            dict(img_path=path, gt_label=int(label))
            for path, label in zip(paths, labels)
        ]

    def full_init(self):
        """Load the annotation and cache the labels as one array."""
        if self._fully_initialized:
            return
        # Labels are read before serialisation empties ``data_list``.
        serialize, self.serialize_data = self.serialize_data, False
        try:
            super().full_init()
        finally:
            self.serialize_data = serialize
        self._gt_labels = np.fromiter(
            (info['gt_label'] for info in self.data_list), np.int64,
            len(self.data_list))
        if serialize:
            self.data_bytes, self.data_address = self._serialize_data()

    def get_gt_labels(self) -> np.ndarray:
        """Labels of all samples.

        Returns:
            np.ndarray: int64 of shape [N] (a copy of the cached array).
        """
        if not self._fully_initialized:
            self.full_init()
        if self._gt_labels is None:
            self._gt_labels = super().get_gt_labels().astype(np.int64)
        return self._gt_labels.copy()

    @property
    def class_counts(self) -> np.ndarray:
        """np.ndarray: Images per class in this split, int64 of shape [C]."""
        return np.bincount(
            self.get_gt_labels(), minlength=len(self.CLASSES)).astype(
                np.int64)

    def _subset_labels(self, indices) -> Optional[np.ndarray]:
        """Labels of ``get_subset(indices)``, same index semantics."""
        labels = self.get_gt_labels()
        if isinstance(indices, int):
            return labels[:indices] if indices >= 0 else labels[indices:]
        if isinstance(indices, Sequence):
            return labels[np.asarray(indices, dtype=np.int64)]
        return None  # the parent raises its own TypeError

    def get_subset_(self, indices: Union[Sequence[int], int]) -> None:
        """Turn this dataset into a subset, keeping the label cache."""
        labels = self._subset_labels(indices)
        super().get_subset_(indices)
        self._gt_labels = labels

    def get_subset(self, indices: Union[Sequence[int], int]) -> BaseDataset:
        """Return a subset of this dataset, with its label cache."""
        labels = self._subset_labels(indices)
        subset = super().get_subset(indices)
        subset._gt_labels = labels
        return subset

    def extra_repr(self) -> List[str]:
        """Add the class counts summary to the dataset repr."""
        body = super().extra_repr()
        if self._fully_initialized:
            counts = self.class_counts
            body.append(f'Images per class: \t{counts.min()} - '
                        f'{counts.max()}')
        return body
