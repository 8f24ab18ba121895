import filecmp
import gzip
import importlib.util
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.datasets.annotation_io import read_list_annotations

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'data', 'make_fashion_mnist_lt.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('make_fashion_mnist_lt',
                                                  SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()
HAVE_DEBIAN = all(
    osp.isfile(osp.join(tool.DEBIAN_DIR, f'{stem}.gz'))
    for stems in tool.IDX_FILES.values() for stem in stems)
needs_data = pytest.mark.skipif(
    not HAVE_DEBIAN,
    reason=f'Fashion-MNIST files absent from {tool.DEBIAN_DIR} (apt-get '
    f'install {tool.DEBIAN_PACKAGE})')
PROFILE = [500, 299, 179, 107, 64, 38, 23, 13, 8, 5]


@pytest.fixture(scope='module')
def official():
    if not HAVE_DEBIAN:
        pytest.skip('Debian Fashion-MNIST files absent')
    arrays, _ = tool.load_fashion_mnist()
    return arrays


@pytest.fixture(scope='module')
def built(tmp_path_factory):
    if not HAVE_DEBIAN:
        pytest.skip('Debian Fashion-MNIST files absent')
    out = str(tmp_path_factory.mktemp('fmnist') / 'lt')
    start = time.perf_counter()
    info = tool.make_fashion_mnist_lt(out)
    info['seconds'] = time.perf_counter() - start
    return info


def official_index(rel):
    return int(osp.splitext(rel)[0].rsplit('_', 1)[1])


def test_long_tail_counts():
    assert tool.long_tail_counts() == PROFILE
    # n_i = floor(n_max * IF^(-i / (C - 1))), checked against the formula.
    for c, n_max, imb in [(5, 100, 10), (7, 64, 64.), (3, 9, 3)]:
        expect = [int(np.floor(n_max * imb**(-i / (c - 1)) + 1e-6))
                  for i in range(c)]
        assert tool.long_tail_counts(c, n_max, imb) == expect
    assert tool.long_tail_counts(3, 9, 3) == [9, 5, 3]
    with pytest.raises(ValueError, match='num_classes >= 2'):
        tool.long_tail_counts(1)


@needs_data
def test_layout_counts_and_pixels(built, official):
    root = built['root']
    assert built['built'] and built['source'] == tool.DEBIAN_DIR
    assert built['seconds'] < 20
    assert sorted(os.listdir(root)) == [
        'FashionMNIST_LT_test.txt', 'FashionMNIST_LT_train.txt',
        'FashionMNIST_LT_val.txt', 'labels.txt', 'meta.json', 'test',
        'train', 'val']
    names = open(osp.join(root, 'labels.txt')).read().split('\n')[:-1]
    assert names == built['classes'] == [
        't-shirt', 'trouser', 'pullover', 'dress', 'coat', 'sandal',
        'shirt', 'sneaker', 'bag', 'ankle boot']
    # class_order[i] is the label that gets the i-th profile count.
    order = built['class_order']
    assert sorted(order) == list(range(10))
    assert [built['train_counts'][c] for c in order] == PROFILE
    per_split = dict(train=built['train_counts'], val=[20] * 10,
                     test=[100] * 10)
    used = {}
    for split, counts in per_split.items():
        records = read_list_annotations(built['ann_files'][split])
        labels = np.array([r[1] for r in records])
        np.testing.assert_array_equal(np.bincount(labels, minlength=10),
                                      counts)
        idx = np.array([official_index(r[0]) for r in records])
        assert len(set(idx)) == len(idx)
        used[split] = set(idx)
        images, official_labels = official[
            'test' if split == 'test' else 'train']
        # Each list line names the official image it copies and its label.
        np.testing.assert_array_equal(official_labels[idx], labels)
        for rel, label, _ in records[::41]:
            assert rel.startswith(
                f'{split}/{tool.class_dir(names[label])}/')
            with Image.open(osp.join(root, rel)) as img:
                assert img.mode == 'L' and img.size == (28, 28)
                np.testing.assert_array_equal(
                    np.asarray(img), images[official_index(rel)])
    assert not used['train'] & used['val']


@needs_data
def test_lists_load_as_dataset(built):
    ds = LongTailListDataset(
        ann_file='FashionMNIST_LT_train.txt', data_root=built['root'],
        classes='labels.txt')
    assert ds.CLASSES == tuple(built['classes'])
    np.testing.assert_array_equal(ds.class_counts, built['train_counts'])


@needs_data
def test_deterministic_for_seed(built, tmp_path):
    same = tool.make_fashion_mnist_lt(str(tmp_path / 'same'))
    other = tool.make_fashion_mnist_lt(str(tmp_path / 'other'), seed=1)
    lists = ['FashionMNIST_LT_train.txt', 'FashionMNIST_LT_val.txt',
             'FashionMNIST_LT_test.txt', 'labels.txt']
    rels = [r[0] for r in read_list_annotations(
        built['ann_files']['train'])][::50]
    _, mismatch, errors = filecmp.cmpfiles(
        built['root'], same['root'], lists + rels, shallow=False)
    assert mismatch == [] and errors == []
    assert same['class_order'] == built['class_order']
    assert other['class_order'] != built['class_order']
    _, mismatch, _ = filecmp.cmpfiles(built['root'], other['root'],
                                      lists[:3], shallow=False)
    assert mismatch == lists[:3]


@needs_data
def test_skip_and_rebuild(tmp_path):
    out = str(tmp_path / 'd')
    kwargs = dict(n_max=20, imb_factor=10, val_per_class=2,
                  test_per_class=3)
    first = tool.make_fashion_mnist_lt(out, **kwargs)
    assert first['built']
    probe = osp.join(out, read_list_annotations(
        first['ann_files']['train'])[0][0])
    mtime = os.stat(probe).st_mtime_ns
    again = tool.make_fashion_mnist_lt(out, **kwargs)
    assert not again['built']
    assert os.stat(probe).st_mtime_ns == mtime
    assert again['train_counts'] == first['train_counts']
    # Other arguments: old files are replaced, not mixed with new ones.
    rebuilt = tool.make_fashion_mnist_lt(out, **dict(kwargs, n_max=10))
    assert rebuilt['built'] and sum(rebuilt['train_counts']) == sum(
        tool.long_tail_counts(10, 10, 10))
    n_files = sum(len(files) for _, _, files in os.walk(
        osp.join(out, 'train')))
    assert n_files == sum(rebuilt['train_counts'])
    with open(osp.join(out, 'meta.json')) as f:
        assert json.load(f)['args']['n_max'] == 10


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match='at least one image per class'):
        tool.make_fashion_mnist_lt(str(tmp_path / 'x'), n_max=50,
                                   imb_factor=100)
    with pytest.raises(ValueError, match='6000 train / 1000 test'):
        tool.make_fashion_mnist_lt(str(tmp_path / 'x'), n_max=5990)
    with pytest.raises(ValueError, match='6000 train / 1000 test'):
        tool.make_fashion_mnist_lt(str(tmp_path / 'x'), test_per_class=1001)
    (tmp_path / 'foreign' / 'train').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='no meta.json'):
        tool.make_fashion_mnist_lt(str(tmp_path / 'foreign'))


def test_read_idx_and_missing_source(tmp_path):
    good = tmp_path / 'ok-idx1-ubyte'
    good.write_bytes(b'\0\0\x08\x01' + (3).to_bytes(4, 'big') + b'\x07\x08\t')
    np.testing.assert_array_equal(tool.read_idx(str(good)), [7, 8, 9])
    short = tmp_path / 'short-idx1-ubyte.gz'
    with gzip.open(short, 'wb') as f:
        f.write(b'\0\0\x08\x01' + (4).to_bytes(4, 'big') + b'\x01')
    with pytest.raises(ValueError, match=r'short-idx1-ubyte\.gz: header '
                       r'promises shape \(4,\)'):
        tool.read_idx(str(short))
    bad = tmp_path / 'bad-idx1-ubyte'
    bad.write_bytes(b'\0\0\x0d\x01' + (1).to_bytes(4, 'big') + b'\0' * 4)
    with pytest.raises(ValueError, match='bad-idx1-ubyte: not an '
                       'unsigned-byte idx file'):
        tool.read_idx(str(bad))
    with pytest.raises(FileNotFoundError, match='lacks'):
        tool.load_fashion_mnist(source_dir=str(tmp_path))


def test_no_source_and_no_download(tmp_path, monkeypatch):
    monkeypatch.setattr(tool, 'DEBIAN_DIR', str(tmp_path / 'none'))
    with pytest.raises(FileNotFoundError,
                       match='apt-get install dataset-fashion-mnist'):
        tool.load_fashion_mnist(download=False)
    with pytest.raises(FileNotFoundError, match='downloading is off'):
        tool.make_fashion_mnist_lt(str(tmp_path / 'out'), download=False)


@needs_data
def test_torchvision_route(tmp_path, monkeypatch, official):
    """Without the Debian files the torchvision route is taken.

    The raw files are placed where torchvision keeps a finished download,
    so the route runs for real without the network.
    """
    raw = tmp_path / 'dl' / 'FashionMNIST' / 'raw'
    raw.mkdir(parents=True)
    for stems in tool.IDX_FILES.values():
        for stem in stems:
            with gzip.open(osp.join(tool.DEBIAN_DIR, f'{stem}.gz')) as src:
                with open(raw / stem, 'wb') as dst:
                    shutil.copyfileobj(src, dst)
    monkeypatch.setattr(tool, 'DEBIAN_DIR', str(tmp_path / 'none'))
    arrays, source = tool.load_fashion_mnist(
        download_dir=str(tmp_path / 'dl'))
    assert source == f"torchvision:{tmp_path / 'dl'}"
    for split in ('train', 'test'):
        for got, expect in zip(arrays[split], official[split]):
            np.testing.assert_array_equal(got, expect)


@needs_data
def test_cli(built, tmp_path):
    cmd = [sys.executable, SCRIPT, built['root']]
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert 'up to date from /usr/share/datasets/fashion-mnist' in \
        result.stdout
    order = built['class_order']
    assert f"{built['classes'][order[0]]} 500" in result.stdout
    assert f"{built['classes'][order[-1]]} 5" in result.stdout
