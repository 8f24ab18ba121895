import os.path as osp

import numpy as np
import pytest
import torch
from mmengine.dataset import pseudo_collate
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401
from vlltr_mm.datasets import LongTailListDataset

# ImageNet-LT style: labels not in file order, class 1 first.
IMAGENET_LINES = [
    ('train/n02/b0.JPEG', 1),
    ('train/n01/a0.JPEG', 0),
    ('train/n01/a1.JPEG', 0),
    ('train/n03/c0.JPEG', 2),
    ('train/n01/a2.JPEG', 0),
]


def make_split(root, lines, ann_name='ImageNet_LT_train.txt', prefix='',
               blank_after=None, skip_images=()):
    """Write a list file plus a real image per line (width 8 + label)."""
    text = []
    for i, (rel, label) in enumerate(lines):
        text.append(f'{rel} {label}\n')
        if blank_after == i:
            text.append('\n')
        if rel in skip_images:
            continue
        path = osp.join(root, prefix, rel)
        (root / prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        img = np.full((6, 8 + int(label), 3), 40 * label, np.uint8)
        Image.fromarray(img).save(path, format='PNG')
    (root / ann_name).write_text(''.join(text))
    return ann_name


def build(**cfg):
    return DATASETS.build(dict(type='LongTailListDataset', **cfg))


def test_imagenet_lt_style_list(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES, blank_after=1)
    ds = build(data_root=str(tmp_path), ann_file=ann)
    assert isinstance(ds, LongTailListDataset)
    assert len(ds) == 5
    assert ds.CLASSES == ('n01', 'n02', 'n03')
    assert ds.metainfo['classes'] == ('n01', 'n02', 'n03')
    labels = ds.get_gt_labels()
    assert labels.dtype == np.int64
    np.testing.assert_array_equal(labels, [1, 0, 0, 2, 0])
    counts = ds.class_counts
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [3, 1, 1])
    info = ds.get_data_info(3)
    assert info['img_path'] == osp.join(str(tmp_path), 'train/n03/c0.JPEG')
    assert info['gt_label'] == 2
    assert ds.ann_file == osp.join(str(tmp_path), ann)
    assert 'Images per class: \t1 - 3' in repr(ds)


def test_data_prefix_and_serialize_off(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES, prefix='images')
    ds = build(data_root=str(tmp_path), data_prefix='images', ann_file=ann,
               serialize_data=False)
    assert ds.get_data_info(0)['img_path'] == osp.join(
        str(tmp_path), 'images', 'train/n02/b0.JPEG')
    np.testing.assert_array_equal(ds.get_gt_labels(), [1, 0, 0, 2, 0])


def test_places_lt_style_names(tmp_path):
    lines = [
        ('data_256/a/airfield/0.jpg', 0),
        ('data_256/a/apartment_building/outdoor/0.jpg', 1),
        ('data_256/c/church/outdoor/0.jpg', 2),
        ('data_256/b/bazaar/indoor/0.jpg', 3),
        ('data_256/b/bazaar/outdoor/0.jpg', 4),
        ('data_256/l/library/indoor/0.jpg', 5),
        ('data_256/a/airfield/1.jpg', 0),
    ]
    ann = make_split(tmp_path, lines, ann_name='Places_LT_train.txt')
    ds = build(data_root=str(tmp_path), ann_file=ann)
    # Only clashing leaf folders grow a level ('outdoor', 'indoor').
    assert ds.CLASSES == ('airfield', 'apartment_building/outdoor',
                          'church/outdoor', 'bazaar/indoor',
                          'bazaar/outdoor', 'library/indoor')
    np.testing.assert_array_equal(ds.class_counts, [2, 1, 1, 1, 1, 1])


def test_flat_list_needs_classes(tmp_path):
    lines = [('val_256/0.jpg', 0), ('val_256/1.jpg', 1), ('val_256/2.jpg', 1)]
    ann = make_split(tmp_path, lines, ann_name='Places_LT_test.txt')
    with pytest.raises(ValueError,
                       match=r"test\.txt:2: classes 0 and 1 both live in "
                       r"folder 'val_256' \(first image of class 0 at "
                       r'.*test\.txt:1\).*pass `classes`'):
        build(data_root=str(tmp_path), ann_file=ann)
    (tmp_path / 'labels.txt').write_text('airfield\nbazaar\n')
    # A relative labels file is found under data_root, like ann_file.
    ds = build(data_root=str(tmp_path), ann_file=ann, classes='labels.txt')
    assert ds.CLASSES == ('airfield', 'bazaar')
    np.testing.assert_array_equal(ds.class_counts, [1, 2])


def test_name_inference_failures(tmp_path):
    ann = make_split(tmp_path, [('a.jpg', 0), ('x/b.jpg', 1)])
    with pytest.raises(ValueError,
                       match=r"train\.txt:1: cannot infer the name of class "
                       r"0 from 'a\.jpg' \(not in a class folder\)"):
        build(data_root=str(tmp_path), ann_file=ann)
    ann = make_split(tmp_path, [('x/a.jpg', 0), ('z/b.jpg', 2)])
    with pytest.raises(ValueError,
                       match=r'train\.txt: cannot infer class names: class 1'
                       r' has no image \(1 classes missing\)'):
        build(data_root=str(tmp_path), ann_file=ann)
    with pytest.raises(ValueError,
                       match=r'class 1 has no image \(2 classes missing'):
        build(data_root=str(tmp_path), ann_file=ann, num_classes=4)


def test_classes_argument_forms(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES)
    names = ['tench', 'goldfish', 'great white shark']
    ds = build(data_root=str(tmp_path), ann_file=ann, classes=names)
    assert ds.CLASSES == tuple(names)
    labels_file = tmp_path / 'elsewhere' / 'labels.txt'
    labels_file.parent.mkdir()
    labels_file.write_text('\n'.join(names) + '\n')
    ds = build(data_root=str(tmp_path), ann_file=ann,
               classes=str(labels_file), num_classes=3)
    assert ds.CLASSES == tuple(names)
    # metainfo wins over classes, as in mmpretrain.
    ds = build(data_root=str(tmp_path), ann_file=ann, classes=names,
               metainfo=dict(classes=('a', 'b', 'c')))
    assert ds.CLASSES == ('a', 'b', 'c')
    with pytest.raises(ValueError, match='repeated names'):
        build(data_root=str(tmp_path), ann_file=ann, classes=['a', 'a', 'b'])
    with pytest.raises(FileNotFoundError, match='missing.txt'):
        build(data_root=str(tmp_path), ann_file=ann, classes='missing.txt')


def test_label_checks(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES)
    with pytest.raises(ValueError,
                       match=r'train\.txt:4: label 2 >= num_classes \(2\)'):
        build(data_root=str(tmp_path), ann_file=ann, num_classes=2)
    with pytest.raises(ValueError,
                       match=r'train\.txt:1: label 1 >= num_classes \(1\)'):
        build(data_root=str(tmp_path), ann_file=ann, classes=['only'])
    with pytest.raises(ValueError,
                       match=r'train\.txt: inconsistent number of classes: '
                       r'num_classes=4, len\(classes\)=3'):
        build(data_root=str(tmp_path), ann_file=ann, num_classes=4,
              classes=['a', 'b', 'c'])
    with pytest.raises(ValueError, match='num_classes must be a positive'):
        build(data_root=str(tmp_path), ann_file=ann, num_classes=0)
    # Extra classes without images are allowed when named explicitly.
    ds = build(data_root=str(tmp_path), ann_file=ann,
               classes=['a', 'b', 'c', 'd'])
    np.testing.assert_array_equal(ds.class_counts, [3, 1, 1, 0])


def test_malformed_lines(tmp_path):
    (tmp_path / 'ImageNet_LT_train.txt').write_text(
        'train/n01/a0.JPEG 0\n\ntrain/n01/a1.JPEG zero\n')
    with pytest.raises(ValueError,
                       match=r"train\.txt:3: label 'zero' is not an integer"):
        build(data_root=str(tmp_path), ann_file='ImageNet_LT_train.txt')
    (tmp_path / 'ImageNet_LT_train.txt').write_text(
        'train/n01/a0.JPEG 0\n\ntrain/n01/a1.JPEG\n')
    with pytest.raises(ValueError, match=r'train\.txt:3: missing label'):
        build(data_root=str(tmp_path), ann_file='ImageNet_LT_train.txt')


def test_missing_image_file(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES, blank_after=0,
                     skip_images={'train/n01/a1.JPEG', 'train/n01/a2.JPEG'})
    with pytest.raises(FileNotFoundError,
                       match=r"train\.txt:4: image file '.*train/n01/"
                       r"a1\.JPEG' does not exist \(2 of 5 listed"):
        build(data_root=str(tmp_path), ann_file=ann)
    ds = build(data_root=str(tmp_path), ann_file=ann, check_files=False)
    assert len(ds) == 5


def test_lazy_init(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES)
    ds = build(data_root=str(tmp_path), ann_file=ann, lazy_init=True)
    assert not ds._fully_initialized
    assert ds.CLASSES is None
    np.testing.assert_array_equal(ds.class_counts, [3, 1, 1])
    assert ds._fully_initialized
    assert ds.CLASSES == ('n01', 'n02', 'n03')


def slow_labels(ds):
    return np.array([ds.get_data_info(i)['gt_label'] for i in range(len(ds))])


@pytest.mark.parametrize('serialize', [True, False])
def test_subsets_keep_labels(tmp_path, serialize):
    ann = make_split(tmp_path, IMAGENET_LINES)
    ds = build(data_root=str(tmp_path), ann_file=ann, indices=[3, 0, 4],
               serialize_data=serialize)
    np.testing.assert_array_equal(ds.get_gt_labels(), [2, 1, 0])
    np.testing.assert_array_equal(ds.class_counts, [1, 1, 1])
    full = build(data_root=str(tmp_path), ann_file=ann,
                 serialize_data=serialize)
    for indices in (2, -2, [4, 3, 1], []):
        sub = full.get_subset(indices)
        np.testing.assert_array_equal(sub.get_gt_labels(), slow_labels(sub))
    np.testing.assert_array_equal(full.get_gt_labels(), [1, 0, 0, 2, 0])
    full.get_subset_([3, 1])
    np.testing.assert_array_equal(full.get_gt_labels(), [2, 0])
    np.testing.assert_array_equal(slow_labels(full), [2, 0])
    # The returned labels are a copy: the cache cannot be corrupted.
    full.get_gt_labels()[:] = 7
    np.testing.assert_array_equal(full.get_gt_labels(), [2, 0])


def test_real_pipeline_loads_item(tmp_path):
    ann = make_split(tmp_path, IMAGENET_LINES)
    ds = build(
        data_root=str(tmp_path), ann_file=ann, test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    item = ds[3]
    # The fixture writes images 8 + label pixels wide, filled with 40*label.
    assert item['inputs'].shape == (3, 6, 10)
    assert item['inputs'].dtype == torch.uint8
    assert int(item['inputs'].float().mean()) == 80
    assert item['data_samples'].gt_label.tolist() == [2]
    assert item['data_samples'].img_path.endswith('train/n03/c0.JPEG')


def test_dataloader_workers(tmp_path):
    """Items survive the trip through a real worker process."""
    ann = make_split(tmp_path, IMAGENET_LINES)
    ds = build(
        data_root=str(tmp_path), ann_file=ann, test_mode=True,
        pipeline=[dict(type='LoadImageFromFile'), dict(type='PackInputs')])
    loader = torch.utils.data.DataLoader(
        ds, batch_size=2, num_workers=1, collate_fn=pseudo_collate)
    labels = [s.gt_label.item() for batch in loader
              for s in batch['data_samples']]
    assert labels == [1, 0, 0, 2, 0]
