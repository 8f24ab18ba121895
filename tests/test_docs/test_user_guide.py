"""The two configs of docs/user_guide.md parse and carry the user's data
and class text everywhere the shipped recipes need them."""
import os
import os.path as osp
import re

import numpy as np
import pytest
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from PIL import Image

import vlltr_mm  # noqa: F401

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GUIDE = osp.join(REPO, 'docs', 'user_guide.md')
NAMES = ('cvlp_r50_my-lt.py', 'lgr_r50_my-lt.py', 'resnet18_my-lt.py')
NUM_CLASSES = 37  # the guide's


def guide_configs():
    text = open(GUIDE).read()
    blocks = {}
    for name in NAMES:
        m = re.search(rf'`configs/my_lt/{re.escape(name)}`:\n\n```python\n'
                      r'(.*?)```', text, re.S)
        assert m, f'{GUIDE}: no python block after configs/my_lt/{name}'
        blocks[name] = m.group(1)
    return blocks


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The guide's layout: configs/my_lt beside the shipped configs, a
    37-class list dataset and its class text, relative to the cwd."""
    os.makedirs(tmp_path / 'configs' / 'my_lt')
    for sub in ('vlltr', '_base_'):
        os.symlink(osp.join(REPO, 'configs', sub),
                   tmp_path / 'configs' / sub)
    for name, body in guide_configs().items():
        (tmp_path / 'configs' / 'my_lt' / name).write_text(body)
    data, text = tmp_path / 'data' / 'my_lt', tmp_path / 'data' / 'my_lt_text'
    os.makedirs(data / 'images')
    os.makedirs(text / 'wiki')
    names = [f'class {i}' for i in range(NUM_CLASSES)]
    rng = np.random.default_rng(0)
    lines = []
    for i in range(NUM_CLASSES):
        Image.fromarray(rng.integers(0, 256, (8, 8, 3), np.uint8)).save(
            data / 'images' / f'{i}.png')
        lines.append(f'images/{i}.png {i}')
        (text / 'wiki' / f'desc_{i}.txt').write_text(
            f'Class {i} is a thing. It has parts.')
    for split in ('train', 'val', 'test'):
        (data / f'my_lt_{split}.txt').write_text('\n'.join(lines) + '\n')
    for folder in (data, text):
        (folder / 'labels.txt').write_text('\n'.join(names) + '\n')
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_guide_configs(project):
    cfgs = {n: Config.fromfile(f'configs/my_lt/{n}') for n in NAMES}
    cvlp, lgr, mixed = (cfgs[n] for n in NAMES)
    labels = 'data/my_lt_text/labels.txt'
    assert cvlp.model.corpus.labels_file == labels
    assert cvlp.train_dataloader.dataset.corpus.labels_file == labels
    assert lgr.custom_hooks[0].corpus.labels_file == labels
    assert lgr.model.head.num_classes == NUM_CLASSES
    assert lgr.load_from == 'work_dirs/cvlp_r50_my-lt/epoch_50.pth'
    for cfg in (cvlp, lgr):
        assert cfg.data_preprocessor.num_classes == NUM_CLASSES
        assert cfg.val_evaluator.num_classes == NUM_CLASSES
        for split in ('val', 'test'):
            ds = cfg[f'{split}_dataloader'].dataset
            assert ds.ann_file == f'my_lt_{split}.txt'
    # The training sets build from the user's files: class text for CVLP,
    # plain images for LGR.
    train = DATASETS.build(cvlp.train_dataloader.dataset)
    assert type(train).__name__ == 'ClassTextDataset'
    assert len(train) == NUM_CLASSES
    assert train.corpus.num_classes == NUM_CLASSES
    assert train.pipeline is train.dataset.pipeline
    plain = DATASETS.build(lgr.train_dataloader.dataset)
    assert type(plain).__name__ == 'LongTailListDataset'
    assert plain.metainfo['classes'][5] == 'class 5'


def test_guide_stock_config_mixing(project):
    """The recipe's stock config: datasets replaced whole (_delete_), the
    stock sampler's ``shuffle`` kept and accepted by SquareRootSampler."""
    from mmengine.registry import DefaultScope
    from mmengine.runner import Runner
    cfg = Config.fromfile(f'configs/my_lt/{NAMES[2]}')
    train = cfg.train_dataloader
    assert 'split' not in train.dataset and 'data_prefix' not in train.dataset
    assert train.sampler.type == 'SquareRootSampler'
    assert train.sampler.shuffle is True  # the stock config's
    assert cfg.val_evaluator.type == 'LongTailAccuracy'
    assert set(cfg.val_evaluator) - {'_scope_'} == {'type', 'topk'}
    with DefaultScope.overwrite_default_scope('mmpretrain'):
        loader = Runner.build_dataloader(train, seed=0)
    assert type(loader.sampler).__name__ == 'SquareRootSampler'
    assert len(loader.dataset) == NUM_CLASSES
