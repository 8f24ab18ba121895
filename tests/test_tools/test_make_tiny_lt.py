import filecmp
import importlib.util
import json
import os
import os.path as osp
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.datasets.annotation_io import read_list_annotations

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'data', 'make_tiny_lt.py')


def load_tool():
    spec = importlib.util.spec_from_file_location('make_tiny_lt', SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


tool = load_tool()


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    out = str(tmp_path_factory.mktemp('tiny_lt'))
    start = time.perf_counter()
    info = tool.make_tiny_lt(out)
    info['seconds'] = time.perf_counter() - start
    return info


def test_layout_and_counts(tiny):
    root = tiny['root']
    assert tiny['built']
    # Brief target is < 3 s; the bound leaves room for a loaded CI machine.
    assert tiny['seconds'] < 10
    assert tiny['train_counts'] == [150, 100, 40, 20, 8, 3]
    names = open(osp.join(root, 'labels.txt')).read().split('\n')[:-1]
    assert names == tiny['classes'] == [
        'red_horizontal', 'green_diagonal', 'blue_vertical',
        'yellow_antidiagonal', 'magenta_horizontal', 'cyan_diagonal']
    assert sorted(os.listdir(root)) == [
        'ImageNet_LT_test.txt', 'ImageNet_LT_train.txt',
        'ImageNet_LT_val.txt', 'labels.txt', 'meta.json', 'test', 'train',
        'val']
    per_split = dict(train=[150, 100, 40, 20, 8, 3], val=[4] * 6,
                     test=[10] * 6)
    for split, counts in per_split.items():
        records = read_list_annotations(tiny['ann_files'][split])
        labels = np.array([r[1] for r in records])
        np.testing.assert_array_equal(np.bincount(labels), counts)
        for rel, label, _ in records[::17]:
            assert rel.startswith(f'{split}/{names[label]}/')
            with Image.open(osp.join(root, rel)) as img:
                assert img.size == (32, 32) and img.mode == 'RGB'
    # The paper's many (>= 100) / medium / few (<= 20) groups are all used.
    counts = np.array(tiny['train_counts'])
    many, few = counts >= 100, counts <= 20
    assert many.any() and few.any() and (~many & ~few).any()


def test_lists_load_as_dataset(tiny):
    ds = LongTailListDataset(
        ann_file='ImageNet_LT_train.txt', data_root=tiny['root'],
        classes='labels.txt')
    inferred = LongTailListDataset(
        ann_file='ImageNet_LT_test.txt', data_root=tiny['root'])
    assert ds.CLASSES == inferred.CLASSES == tuple(tiny['classes'])
    np.testing.assert_array_equal(ds.class_counts, tiny['train_counts'])
    np.testing.assert_array_equal(inferred.class_counts, [10] * 6)


def test_skip_and_rebuild(tmp_path):
    out = str(tmp_path / 'd')
    kwargs = dict(num_classes=3, counts=[6, 3, 1], img_size=16,
                  val_per_class=1, test_per_class=2)
    assert tool.make_tiny_lt(out, **kwargs)['built']
    probe = osp.join(out, 'train', 'red_horizontal', '00000.png')
    mtime = os.stat(probe).st_mtime_ns
    again = tool.make_tiny_lt(out, **kwargs)
    assert not again['built']
    assert os.stat(probe).st_mtime_ns == mtime
    assert again['train_counts'] == [6, 3, 1]
    # Other arguments: old files are replaced, not mixed with new ones.
    rebuilt = tool.make_tiny_lt(out, **dict(kwargs, counts=[2, 2, 2]))
    assert rebuilt['built']
    assert len(os.listdir(osp.join(out, 'train', 'red_horizontal'))) == 2
    with open(osp.join(out, 'meta.json')) as f:
        assert json.load(f)['counts'] == [2, 2, 2]


def test_deterministic_for_seed(tmp_path):
    kwargs = dict(num_classes=2, counts=[3, 1], img_size=16,
                  val_per_class=1, test_per_class=1)
    a, b, c = (str(tmp_path / n) for n in 'abc')
    tool.make_tiny_lt(a, seed=3, **kwargs)
    tool.make_tiny_lt(b, seed=3, **kwargs)
    tool.make_tiny_lt(c, seed=4, **kwargs)
    rels = [r[0] for r in read_list_annotations(
        osp.join(a, 'ImageNet_LT_train.txt'))]
    rels += ['ImageNet_LT_train.txt', 'labels.txt']
    _, mismatch, errors = filecmp.cmpfiles(a, b, rels, shallow=False)
    assert mismatch == [] and errors == []
    _, mismatch, _ = filecmp.cmpfiles(a, c, rels[:4], shallow=False)
    assert mismatch == rels[:4]


def test_argument_errors(tmp_path):
    with pytest.raises(ValueError, match='counts has 2 entries but '
                       'num_classes is 3'):
        tool.make_tiny_lt(str(tmp_path / 'x'), num_classes=3, counts=[1, 2])
    with pytest.raises(ValueError, match='at least one image per class'):
        tool.make_tiny_lt(str(tmp_path / 'x'), num_classes=2, counts=[0, 2])
    with pytest.raises(ValueError, match='num_classes must be >= 1'):
        tool.make_tiny_lt(str(tmp_path / 'x'), num_classes=0)
    (tmp_path / 'foreign' / 'train').mkdir(parents=True)
    with pytest.raises(FileExistsError, match='no meta.json'):
        tool.make_tiny_lt(str(tmp_path / 'foreign'))


def test_default_counts_and_names():
    assert tool.default_counts(6) == [150, 100, 40, 20, 8, 3]
    counts = tool.default_counts(11)
    assert counts[0] == 150 and counts[-1] == 3
    assert all(a >= b for a, b in zip(counts, counts[1:]))
    assert tool.default_counts(1) == [150]
    names = [s['name'] for s in tool.class_specs(100)]
    assert len(set(names)) == 100
    assert names[48] == 'red_horizontal_1'


def test_cli(tmp_path):
    out = tmp_path / 'cli'
    cmd = [sys.executable, SCRIPT, str(out), '--num-classes', '3',
           '--counts', '4', '2', '1', '--img-size', '12',
           '--val-per-class', '1', '--test-per-class', '1', '--seed', '5']
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert 'built; 3 classes, train counts [4, 2, 1]' in result.stdout
    result = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert 'up to date' in result.stdout
    with open(out / 'meta.json') as f:
        assert json.load(f)['seed'] == 5


def load_split(root, split):
    records = read_list_annotations(
        osp.join(root, f'ImageNet_LT_{split}.txt'))
    images = np.stack(
        [np.asarray(Image.open(osp.join(root, r[0]))) for r in records])
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    return x, torch.tensor([r[1] for r in records])


def train_and_test(x, y, x_test, y_test, epochs=5):
    """Top-1 test accuracy of a two-layer CNN trained with Adam."""
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, stride=2), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(16, int(y.max()) + 1))
    optim = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(epochs):
        for batch in torch.randperm(len(y)).split(32):
            loss = torch.nn.functional.cross_entropy(model(x[batch]),
                                                     y[batch])
            optim.zero_grad()
            loss.backward()
            optim.step()
    with torch.no_grad():
        return (model(x_test).argmax(1) == y_test).float().mean().item()


def test_tiny_cnn_learns_it(tiny):
    """A tiny CNN trained a few epochs is far above chance (1/6)."""
    torch.manual_seed(0)
    x, y = load_split(tiny['root'], 'train')
    x_test, y_test = load_split(tiny['root'], 'test')
    # One thread: intra-op parallelism only slows such tiny convolutions.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        acc = train_and_test(x, y, x_test, y_test)
    finally:
        torch.set_num_threads(threads)
    assert acc > 0.6
