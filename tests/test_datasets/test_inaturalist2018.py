import json
import os.path as osp

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401
from vlltr_mm.datasets import INaturalist2018, LongTailListDataset

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# (image id, file name, category id); category ids are sparse and unsorted.
IMAGES = [
    (101, 'train_val2018/Plantae/31/a.jpg', 31),
    (102, 'train_val2018/Aves/4/b.jpg', 4),
    (103, 'train_val2018/Plantae/31/c.jpg', 31),
    (104, 'train_val2018/Fungi/17/d.jpg', 17),
    (105, 'train_val2018/Plantae/31/e.jpg', 31),
]
CATEGORIES = [dict(id=31, name='Quercus robur', supercategory='Plantae'),
              dict(id=4, name='Pica pica', supercategory='Aves'),
              dict(id=17, name='Amanita muscaria', supercategory='Fungi')]


def write_inat(root, name='train2018.json', images=IMAGES, skip=()):
    data = dict(
        info=dict(year=2018),
        images=[dict(id=i, file_name=f, width=8, height=6)
                for i, f, _ in images],
        # Annotations in a different order than images.
        annotations=[dict(id=k, image_id=i, category_id=c)
                     for k, (i, _, c) in enumerate(reversed(images))],
        categories=CATEGORIES)
    (root / name).write_text(json.dumps(data, indent=1))
    for _, file_name, cat in images:
        if file_name in skip:
            continue
        (root / file_name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((6, 8, 3), cat, np.uint8)).save(
            root / file_name, format='PNG')
    return name


def build(**cfg):
    return DATASETS.build(dict(type='INaturalist2018', **cfg))


def test_inat_dataset(tmp_path):
    ann = write_inat(tmp_path)
    ds = build(data_root=str(tmp_path), ann_file=ann)
    assert isinstance(ds, INaturalist2018)
    assert isinstance(ds, LongTailListDataset)
    assert len(ds) == 5
    # Sorted category ids 4, 17, 31 -> labels 0, 1, 2.
    assert ds.CLASSES == ('Pica pica', 'Amanita muscaria', 'Quercus robur')
    np.testing.assert_array_equal(ds.get_gt_labels(), [2, 0, 2, 1, 2])
    np.testing.assert_array_equal(ds.class_counts, [1, 1, 3])
    assert ds.class_counts.dtype == np.int64
    assert ds.get_data_info(1)['img_path'] == osp.join(
        str(tmp_path), 'train_val2018/Aves/4/b.jpg')


def test_inat_num_classes_and_classes(tmp_path):
    ann = write_inat(tmp_path)
    ds = build(data_root=str(tmp_path), ann_file=ann, num_classes=3,
               classes=['a', 'b', 'c'])
    assert ds.CLASSES == ('a', 'b', 'c')
    with pytest.raises(ValueError,
                       match=r'train2018\.json: inconsistent number of '
                       r'classes: num_classes=8142, categories in .*'
                       r'train2018\.json=3'):
        build(data_root=str(tmp_path), ann_file=ann, num_classes=8142)
    with pytest.raises(ValueError,
                       match=r'len\(classes\)=2, categories in'):
        build(data_root=str(tmp_path), ann_file=ann, classes=['a', 'b'])


def test_inat_real_names_and_base_config(tmp_path):
    """The base config reads names from categories.json under data_root."""
    ann = write_inat(tmp_path)
    write_inat(tmp_path, name='val2018.json', images=IMAGES[1:4])
    real = [dict(id=c['id'], name=c['name'].upper()) for c in CATEGORIES]
    (tmp_path / 'categories.json').write_text(json.dumps(real))
    cfg = Config.fromfile(osp.join(REPO, 'configs', '_base_', 'datasets',
                                   'inat2018.py'))
    train_cfg = cfg.train_dataloader.dataset
    train_cfg.update(data_root=str(tmp_path), num_classes=3, pipeline=[])
    train = DATASETS.build(train_cfg)
    assert train.ann_file == osp.join(str(tmp_path), ann)
    assert train.CLASSES == ('PICA PICA', 'AMANITA MUSCARIA',
                             'QUERCUS ROBUR')
    test_cfg = cfg.test_dataloader.dataset
    test_cfg.update(data_root=str(tmp_path), num_classes=3, pipeline=[])
    test = DATASETS.build(test_cfg)
    np.testing.assert_array_equal(test.class_counts, [1, 1, 1])
    assert test.CLASSES == train.CLASSES


def test_inat_missing_image(tmp_path):
    ann = write_inat(tmp_path, skip={'train_val2018/Fungi/17/d.jpg'})
    with pytest.raises(FileNotFoundError,
                       match=r"train2018\.json: images\[3\] \('train_val2018"
                       r"/Fungi/17/d\.jpg'\): image file .* does not exist"):
        build(data_root=str(tmp_path), ann_file=ann)
    assert len(build(data_root=str(tmp_path), ann_file=ann,
                     check_files=False)) == 5


def test_inat_malformed_json(tmp_path):
    (tmp_path / 'val2018.json').write_text('{"images": [\n{"id": 1,}\n]}')
    with pytest.raises(ValueError,
                       match=r'val2018\.json:2: invalid JSON'):
        build(data_root=str(tmp_path), ann_file='val2018.json')
    (tmp_path / 'val2018.json').write_text(json.dumps(dict(
        images=[dict(id=1, file_name='x.jpg')], annotations=[],
        categories=CATEGORIES)))
    with pytest.raises(ValueError,
                       match=r"val2018\.json: images\[0\] \(id 1, 'x\.jpg'\)"
                       ' has no annotation'):
        build(data_root=str(tmp_path), ann_file='val2018.json')


def test_inat_pipeline_and_lazy_init(tmp_path):
    ann = write_inat(tmp_path)
    ds = build(
        data_root=str(tmp_path), ann_file=ann, lazy_init=True,
        test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    assert ds.CLASSES is None
    item = ds[3]
    assert ds.CLASSES[1] == 'Amanita muscaria'
    assert item['inputs'].shape == (3, 6, 8)
    # The fixture fills each image with its category id.
    assert int(item['inputs'][0, 0, 0]) == 17
    assert item['data_samples'].gt_label.tolist() == [1]
