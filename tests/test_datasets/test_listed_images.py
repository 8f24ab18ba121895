"""An image listed twice is refused, naming both lines, unless repeats are
allowed on purpose; an image listed with two labels is always refused."""
import json

import numpy as np
import pytest
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401
from vlltr_mm.datasets import count_classes_from_file
from vlltr_mm.datasets.listed_images import first_listing


def write(root, lines):
    """``list.txt`` with ``lines`` and a real PNG for every path."""
    for rel, _ in lines:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / rel)
    (root / 'list.txt').write_text(''.join(f'{p} {c}\n' for p, c in lines))
    return str(root / 'list.txt')


def build(root, **kwargs):
    return DATASETS.build(dict(type='LongTailListDataset', data_root=str(root),
                               ann_file='list.txt', **kwargs))


def test_first_listing():
    paths = ['a/x.png', 'b/y.png', 'a/./x.png', 'c/z.png', 'b/y.png']
    assert first_listing(paths).tolist() == [0, 1, 0, 3, 1]
    assert first_listing(['p']).tolist() == [0]


def test_repeated_image(tmp_path):
    # 3 images of class 0, the list repeated three times: 9, not 3.
    lines = [('a/0.png', 0), ('a/1.png', 0), ('a/2.png', 0), ('b/0.png', 1)]
    ann = write(tmp_path, lines[:3] * 3 + lines[3:])
    with pytest.raises(ValueError, match=(
            rf"{ann}:4: image 'a/0.png' is listed again \(first at "
            rf'{ann}:1\); 6 line\(s\) repeat an earlier image(.|\n)*'
            'set allow_duplicates=True on the dataset')):
        build(tmp_path)
    with pytest.raises(ValueError, match=rf'{ann}:4: .*first at {ann}:1'):
        count_classes_from_file(ann)
    # Deliberate oversampling: the dataset keeps every line, the metric's
    # counts take each image once.
    ds = build(tmp_path, allow_duplicates=True)
    assert ds.class_counts.tolist() == [9, 1]
    assert count_classes_from_file(ann, allow_duplicates=True).tolist() == [
        3, 1]


def test_image_with_two_labels(tmp_path):
    ann = write(tmp_path, [('a/0.png', 0), ('b/0.png', 1), ('./a/0.png', 1)])
    for allow in (False, True):
        with pytest.raises(ValueError, match=(
                rf"{ann}:3: image './a/0.png' is listed with label 1, but "
                rf'{ann}:1 lists it with label 0; an image has one class')):
            build(tmp_path, allow_duplicates=allow)
    with pytest.raises(ValueError, match=rf'{ann}:3: .* label 1, but'):
        count_classes_from_file(ann, allow_duplicates=True)


def test_inat_json_names_both_entries(tmp_path):
    (tmp_path / 'img').mkdir()
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img/x.png')
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / 'img/y.png')
    data = dict(
        images=[dict(id=1, file_name='img/x.png'),
                dict(id=2, file_name='img/y.png'),
                dict(id=3, file_name='img/x.png')],
        annotations=[dict(image_id=i, category_id=c)
                     for i, c in ((1, 7), (2, 9), (3, 7))],
        categories=[dict(id=7, name='a'), dict(id=9, name='b')])
    ann = tmp_path / 'val.json'
    ann.write_text(json.dumps(data))
    with pytest.raises(ValueError, match=(
            rf"{ann}: images\[2\] \('img/x.png'\): image 'img/x.png' is "
            rf"listed again \(first at {ann}: images\[0\]")):
        DATASETS.build(dict(type='INaturalist2018', data_root=str(tmp_path),
                            ann_file='val.json'))
