"""Dataset of the ImageNet-LT / Places-LT ``relative/path label`` lists."""
import warnings
from typing import Callable, List, Optional, Sequence, Union

import numpy as np
from mmengine.fileio import get_file_backend
from mmpretrain.datasets import BaseDataset
from mmpretrain.registry import DATASETS

from .annotation_io import (
    check_label_range,
    read_classes_argument,
    read_list_annotations,
)
from .folder_class_names import infer_class_names
from .image_check import decode_settings, image_problem, verify_images
from .listed_images import check_duplicate_images, check_files_exist


class SampleLoadError(RuntimeError):
    """A listed image could not be loaded; names the image and its line."""


@DATASETS.register_module()
class LongTailListDataset(BaseDataset):
    """Long-tailed classification dataset read from a list file.

    Reads the list files of ImageNet-LT and Places-LT (paper §4.1), e.g.
    ``ImageNet_LT_train.txt`` with lines such as
    ``train/n01440764/n01440764_190.JPEG 0``. Image paths are relative to
    ``data_root/data_prefix``; ``ann_file`` is relative to ``data_root``.

    Every problem of the annotation (line without label, non-integer or
    negative label, label ``>= num_classes``, missing image file, an image
    listed twice, with ``verify_images`` an undecodable image) raises an
    error whose message starts with ``"<ann_file>:<line>:"``; so does an
    image that fails to load during training (:class:`SampleLoadError`).
    A class without any image in the split is warned about by name.

    Class names, in order of preference: ``metainfo['classes']``,
    ``classes``, else the folder of each class's first image
    (``train/n01440764/x.JPEG`` -> ``'n01440764'``, see
    :func:`~.folder_class_names.infer_class_names`). Lists whose images do
    not sit in class folders (Places-LT's flat ``val_256/``) need
    ``classes``.

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
        verify_images (bool): Decode every listed image when the
            annotation is loaded (as ``LoadImageFromFile`` in ``pipeline``
            would, in worker processes) and name every bad one with its
            line. Costs a pass over the data; ``tools/data/check_images.py``
            does the same once, ahead of training. Defaults to False.
        allow_duplicates (bool): Accept an image listed again with the same
            label (deliberate oversampling); an image listed with two
            labels is always an error. Defaults to False.
        pipeline (Sequence): Processing pipeline. Defaults to ().
        test_mode (bool): Whether the dataset is used for testing.
            Defaults to False.
        lazy_init (bool): Defer reading the annotation to the first access.
            Defaults to False.
        metainfo (dict, optional): Meta information; its ``'classes'`` wins
            over ``classes``. Defaults to None.
        **kwargs: Other arguments of :class:`mmpretrain.datasets.BaseDataset`
            (``indices``, ``serialize_data``, ``max_refetch`` ...).

    Attributes:
        classes_source (str | None): Where the class names come from, for
            messages: the labels file, ``'classes'``, ``"metainfo['classes']"``
            or the list's image folders.
    """

    def __init__(self,
                 ann_file: str,
                 data_root: str = '',
                 data_prefix: Union[str, dict] = '',
                 classes: Union[str, Sequence[str], None] = None,
                 num_classes: Optional[int] = None,
                 check_files: bool = True,
                 verify_images: bool = False,
                 allow_duplicates: bool = False,
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
        self.verify_images = verify_images
        self.allow_duplicates = allow_duplicates
        self._gt_labels: Optional[np.ndarray] = None
        classes, self.classes_source = read_classes_argument(
            classes, data_root)
        if (metainfo or {}).get('classes') is not None:
            self.classes_source = "metainfo['classes']"  # it wins
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
        lines = [record[2] for record in records]

        def locate(i: int) -> str:
            return self._location(lines[i])

        num_classes = self._resolve_num_classes(labels, locate)
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(
                infer_class_names(self.ann_file, rel_paths, labels,
                                  num_classes, locate))
            self.classes_source = f'the image folders of {self.ann_file}'
        return self._make_data_list(rel_paths, labels, locate, lines)

    def _location(self, position: int) -> str:
        """Where sample ``position`` (a 1-based line) is listed."""
        return f'{self.ann_file}:{position}'

    def _resolve_num_classes(self,
                             labels: np.ndarray,
                             locate: Callable[[int], str],
                             from_file: Optional[int] = None) -> int:
        """Reconcile every source of C and check the labels against it."""
        sources = {}
        if self.num_classes is not None:
            sources['num_classes'] = self.num_classes
        if self._metainfo.get('classes') is not None:
            name = ('len(classes)' if self.classes_source == 'classes' else
                    f'class names in {self.classes_source}')
            sources[name] = len(self._metainfo['classes'])
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

    def _make_data_list(self, rel_paths: List[str], labels: np.ndarray,
                        locate: Callable[[int], str],
                        positions: Sequence[int]) -> List[dict]:
        """Join image paths with the prefix and optionally check them.

        ``positions[i]`` (line, or entry of a JSON file) is kept as
        ``ann_pos`` so that a load failure can name where image i is listed.
        """
        check_duplicate_images(rel_paths, labels, locate,
                               self.allow_duplicates)
        # One backend lookup, not one per image (join_path does one each).
        join = get_file_backend(self.img_prefix,
                                enable_singleton=True).join_path
        paths = [join(self.img_prefix, p) for p in rel_paths]
        if self.check_files:
            check_files_exist(paths, locate)
        if self.verify_images:
            verify_images(self.ann_file, paths, locate, self.pipeline)
        return [
            dict(img_path=path, gt_label=int(label), ann_pos=int(pos))
            for path, label, pos in zip(paths, labels, positions)
        ]

    def prepare_data(self, idx: int):
        """Run the pipeline on sample ``idx``, naming its image on failure.

        Raises:
            SampleLoadError: If the pipeline fails (e.g. a zero-byte or
                truncated image), with the image and its list line.
        """
        try:
            return super().prepare_data(idx)
        except Exception as e:  # decoder and transform errors vary
            info = self.get_data_info(idx)
            where, path = self._location(info['ann_pos']), info['img_path']
            # The file alone: a plain reason, or fine (a transform failed).
            why = image_problem(
                path, **decode_settings(self.pipeline))
            if not why:
                raise SampleLoadError(
                    f'{where}: the pipeline failed on image {path!r} '
                    f'({type(e).__name__}: {str(e).strip()})') from e
            raise SampleLoadError(
                f'{where}: cannot load image {path!r} ({why}); replace or '
                'remove the file or its line (tools/data/check_images.py '
                'finds every bad image)') from e

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
        self._warn_empty_classes()
        if serialize:
            self.data_bytes, self.data_address = self._serialize_data()

    def _warn_empty_classes(self) -> None:
        """Warn, naming them, about classes without an image here."""
        empty = np.flatnonzero(self.class_counts == 0)
        if empty.size:
            names = ', '.join(f'{c} {self.CLASSES[c]!r}'
                              for c in empty[:20].tolist())
            more = f' and {empty.size - 20} more' if empty.size > 20 else ''
            warnings.warn(
                f'{self.ann_file}: {empty.size} of {len(self.CLASSES)} '
                f'classes have no image in this split: {names}{more}. '
                'Nothing teaches or measures them; check the list file or '
                '`classes`.')

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
