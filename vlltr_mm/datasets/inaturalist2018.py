"""iNaturalist 2018 read from its official COCO-style JSON files."""
from typing import List

from mmpretrain.registry import DATASETS

from .annotation_io import read_inat_annotations
from .long_tail_list_dataset import LongTailListDataset


@DATASETS.register_module()
class INaturalist2018(LongTailListDataset):
    """iNaturalist 2018 (8,142 species, paper §4.1).

    ``ann_file`` is ``train2018.json`` or ``val2018.json``; the paper, like
    earlier work, reports results on the official validation set. The
    images' ``file_name`` (``train_val2018/Plantae/7477/xxx.jpg``) is
    relative to ``data_root/data_prefix``. Category ids are mapped to
    contiguous labels in increasing id order and the categories' ``name``
    become ``metainfo['classes']`` unless ``classes`` or
    ``metainfo['classes']`` is given (its length must then match). The 2018
    annotation files carry obfuscated names; pass
    ``classes='categories.json'`` (the real names, released separately) to
    use those.

    Arguments, ``class_counts`` and ``get_gt_labels()`` are those of
    :class:`LongTailListDataset`. Errors name the JSON file and the offending
    entry (``"val2018.json: images[12] ..."``); invalid JSON names the line.

    Examples:
        >>> from mmpretrain.registry import DATASETS
        >>> dataset = DATASETS.build(dict(
        ...     type='INaturalist2018', data_root='data/inat2018',
        ...     ann_file='val2018.json'))
        >>> len(dataset.CLASSES)
        8142
    """

    def load_data_list(self) -> List[dict]:
        """Read the JSON file into ``[{'img_path', 'gt_label'}, ...]``."""
        ann = read_inat_annotations(self.ann_file)

        def locate(i: int) -> str:
            return f'{self._location(i)} ({ann.file_names[i]!r})'

        self._resolve_num_classes(
            ann.labels, locate, from_file=len(ann.class_names))
        if self._metainfo.get('classes') is None:
            self._metainfo['classes'] = tuple(ann.class_names)
            self.classes_source = f'the categories of {self.ann_file}'
        return self._make_data_list(ann.file_names, ann.labels, locate,
                                    range(len(ann.file_names)))

    def _location(self, position: int) -> str:
        """Where sample ``position`` (an ``images`` entry) is listed."""
        return f'{self.ann_file}: images[{position}]'

