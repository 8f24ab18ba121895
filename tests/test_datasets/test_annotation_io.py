import json

import numpy as np
import pytest

from vlltr_mm.datasets.annotation_io import (
    count_classes_from_file,
    read_class_names,
    read_inat_annotations,
    read_inat_categories,
    read_list_annotations,
)


def write(path, text):
    path.write_text(text)
    return str(path)


def inat_json(images=None, annotations=None, categories=None):
    """Three images, categories with non-contiguous, unsorted ids."""
    data = dict(
        images=[dict(id=10, file_name='train_val2018/A/7/a.jpg'),
                dict(id=3, file_name='train_val2018/B/2/b.jpg'),
                dict(id=7, file_name='train_val2018/A/7/c.jpg')],
        annotations=[dict(id=0, image_id=3, category_id=2),
                     dict(id=1, image_id=7, category_id=7),
                     dict(id=2, image_id=10, category_id=7)],
        categories=[dict(id=7, name='Aves'), dict(id=2, name='Plantae'),
                    dict(id=40, name='Fungi')])
    for key, value in (('images', images), ('annotations', annotations),
                       ('categories', categories)):
        if value is not None:
            data[key] = value
    return data


def test_read_list_annotations(tmp_path):
    ann = write(
        tmp_path / 'ImageNet_LT_train.txt',
        'train/n01/a.JPEG 0\n\n'
        'train/n02/b.JPEG\t1\r\n'
        'train/my dir/c d.jpg 12\n'
        '   \n')
    assert read_list_annotations(ann) == [
        ('train/n01/a.JPEG', 0, 1),
        ('train/n02/b.JPEG', 1, 3),
        ('train/my dir/c d.jpg', 12, 4),
    ]


@pytest.mark.parametrize('bad_line, message', [
    ('train/x.JPEG', r"train\.txt:3: missing label in 'train/x\.JPEG'"),
    ('train/x.JPEG x', r"train\.txt:3: label 'x' is not an integer"),
    ('train/x.JPEG 1.0', r"train\.txt:3: label '1\.0' is not an integer"),
    ('train/x.JPEG 1_0', r"train\.txt:3: label '1_0' is not an integer"),
    ('train/x.JPEG -2', r'train\.txt:3: label -2 is negative'),
])
def test_read_list_annotations_errors(tmp_path, bad_line, message):
    ann = write(tmp_path / 'ImageNet_LT_train.txt',
                f'a/0.jpg 0\n\n{bad_line}\nb/1.jpg 1\n')
    with pytest.raises(ValueError, match=message):
        read_list_annotations(ann)


def test_read_list_annotations_empty_and_missing(tmp_path):
    ann = write(tmp_path / 'empty.txt', '\n  \n')
    with pytest.raises(ValueError, match=r'empty\.txt: no annotations'):
        read_list_annotations(ann)
    with pytest.raises(FileNotFoundError, match='nope.txt'):
        read_list_annotations(str(tmp_path / 'nope.txt'))


def test_read_class_names(tmp_path):
    labels = write(tmp_path / 'labels.txt', 'tench\n\ngoldfish \n great '
                   'white shark\n')
    assert read_class_names(labels) == [
        'tench', 'goldfish', 'great white shark']
    dup = write(tmp_path / 'dup.txt', 'a\nb\n\na\n')
    with pytest.raises(ValueError, match=r"dup\.txt:4: class name 'a' "
                       'repeats line 1'):
        read_class_names(dup)
    with pytest.raises(ValueError, match='no class names'):
        read_class_names(write(tmp_path / 'none.txt', '\n'))


def test_read_inat_annotations(tmp_path):
    path = write(tmp_path / 'val2018.json', json.dumps(inat_json()))
    ann = read_inat_annotations(path)
    # Sorted category ids [2, 7, 40] -> labels 0, 1, 2; images keep order.
    assert ann.file_names == ['train_val2018/A/7/a.jpg',
                              'train_val2018/B/2/b.jpg',
                              'train_val2018/A/7/c.jpg']
    assert ann.labels.dtype == np.int64
    np.testing.assert_array_equal(ann.labels, [1, 0, 1])
    assert ann.class_names == ['Plantae', 'Aves', 'Fungi']
    np.testing.assert_array_equal(ann.category_ids, [2, 7, 40])


@pytest.mark.parametrize('data, message', [
    ([1, 2], r'val2018\.json: expected a JSON object'),
    ({'images': [], 'annotations': []},
     r"val2018\.json: missing top-level list 'categories'"),
    (inat_json(images=[]), r"val2018\.json: 'images' is empty"),
    (inat_json(images=[dict(id=1, file_name='a.jpg'), dict(id=2)]),
     r"val2018\.json: images\[1\] has no 'file_name'"),
    (inat_json(annotations=[dict(image_id=3), dict(image_id=7)]),
     r"val2018\.json: annotations\[0\] has no 'category_id'"),
    (inat_json(categories=[dict(id=2, name='x'), dict(id=7)]),
     r"val2018\.json: categories\[1\] has no 'name'"),
    (inat_json(images=[dict(id='3', file_name='a.jpg')]),
     r"val2018\.json: images\[0\]\['id'\] = '3' is not an integer"),
    (inat_json(categories=[dict(id=2, name='a'), dict(id=7, name='b'),
                           dict(id=2, name='c')]),
     r'val2018\.json: categories\[0\] and categories\[2\] share id 2'),
    (inat_json(annotations=[dict(image_id=3, category_id=2),
                            dict(image_id=7, category_id=7)]),
     r"val2018\.json: images\[0\] \(id 10, 'train_val2018/A/7/a\.jpg'\) "
     'has no annotation'),
    (inat_json(annotations=[dict(image_id=3, category_id=2),
                            dict(image_id=7, category_id=7),
                            dict(image_id=10, category_id=7),
                            dict(image_id=3, category_id=7)]),
     r'val2018\.json: images\[1\] .* has several annotations'),
    (inat_json(annotations=[dict(image_id=3, category_id=2),
                            dict(image_id=7, category_id=5),
                            dict(image_id=10, category_id=7)]),
     r'val2018\.json: annotations\[1\] has unknown category id 5'),
    (inat_json(annotations=[dict(image_id=3, category_id=2),
                            dict(image_id=99, category_id=7),
                            dict(image_id=10, category_id=7)]),
     r'val2018\.json: annotations\[1\] refers to unknown image id 99'),
])
def test_read_inat_annotations_errors(tmp_path, data, message):
    path = write(tmp_path / 'val2018.json', json.dumps(data))
    with pytest.raises(ValueError, match=message):
        read_inat_annotations(path)


def test_read_inat_categories(tmp_path):
    cats = [dict(id=2, name='Quercus robur', kingdom='Plantae'),
            dict(id=0, name='Pica pica')]
    path = write(tmp_path / 'categories.json', json.dumps(cats))
    assert read_inat_categories(path) == ['Pica pica', 'Quercus robur']
    # An annotation file works too: its 'categories' are used.
    path = write(tmp_path / 'val2018.json', json.dumps(inat_json()))
    assert read_inat_categories(path) == ['Plantae', 'Aves', 'Fungi']
    path = write(tmp_path / 'bad.json', json.dumps([dict(id=1)]))
    with pytest.raises(ValueError,
                       match=r"bad\.json: categories\[0\] has no 'name'"):
        read_inat_categories(path)
    path = write(tmp_path / 'empty.json', json.dumps(dict(images=[])))
    with pytest.raises(ValueError, match=r'empty\.json: expected a non-empty'):
        read_inat_categories(path)


def test_read_inat_annotations_bad_json(tmp_path):
    path = write(tmp_path / 'train2018.json',
                 '{\n  "images": [],\n  "annotations": [,]\n}\n')
    with pytest.raises(ValueError,
                       match=r'train2018\.json:3: invalid JSON'):
        read_inat_annotations(path)


def test_count_classes_from_list_file(tmp_path):
    ann = write(tmp_path / 'ImageNet_LT_train.txt',
                'a 0\nb 2\nc 2\n\nd 0\ne 2\n')
    counts = count_classes_from_file(ann)
    assert counts.dtype == np.int64
    np.testing.assert_array_equal(counts, [2, 0, 3])
    np.testing.assert_array_equal(
        count_classes_from_file(ann, num_classes=5), [2, 0, 3, 0, 0])
    with pytest.raises(ValueError,
                       match=r'train\.txt:2: label 2 >= num_classes \(2\); '
                       r'3 label\(s\) out of range'):
        count_classes_from_file(ann, num_classes=2)
    with pytest.raises(ValueError, match='num_classes must be positive'):
        count_classes_from_file(ann, num_classes=0)


def test_count_classes_from_json_file(tmp_path):
    path = write(tmp_path / 'train2018.JSON', json.dumps(inat_json()))
    # Three categories, one of them (Fungi) without images.
    np.testing.assert_array_equal(count_classes_from_file(path), [1, 2, 0])
    np.testing.assert_array_equal(
        count_classes_from_file(path, num_classes=4), [1, 2, 0, 0])
    with pytest.raises(ValueError,
                       match=r"train2018\.JSON: images\[0\] "
                       r"\('train_val2018/A/7/a\.jpg'\): label 1 >= "
                       r'num_classes \(1\)'):
        count_classes_from_file(path, num_classes=1)


def test_read_class_names_layouts(tmp_path):
    plain = tmp_path / 'plain.txt'
    plain.write_text('tabby cat\n\nt-shirt/top\n  ankle boot \n')
    assert read_class_names(str(plain)) == [
        'tabby cat', 't-shirt/top', 'ankle boot'
    ]
    imagenet = tmp_path / 'imagenet.txt'
    imagenet.write_text('n01443537 1 goldfish\n'
                        'n01440764 0 tench\n'
                        'n01484850 2 great_white_shark\n')
    assert read_class_names(str(imagenet)) == [
        'tench', 'goldfish', 'great white shark'
    ]
    places = tmp_path / 'places.txt'
    places.write_text('/a/airfield 1\n/a/abbey 0\n'
                      '/a/apartment_building/outdoor 2\n')
    assert read_class_names(str(places)) == [
        'abbey', 'airfield', 'apartment building outdoor'
    ]
    gap = tmp_path / 'gap.txt'
    gap.write_text('/a/abbey 0\n/a/airfield 2\n')
    with pytest.raises(ValueError, match='gap.txt: indices'):
        read_class_names(str(gap))
    empty = tmp_path / 'empty.txt'
    empty.write_text('\n\n')
    with pytest.raises(ValueError, match='no class names'):
        read_class_names(str(empty))
