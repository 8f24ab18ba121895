import argparse
import importlib.util
import os.path as osp
import shutil

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from mmpretrain.registry import DATA_SAMPLERS, DATASETS, METRICS, MODELS

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG_DIR = osp.join(REPO, 'configs', '_base_', 'datasets')
CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073]) * 255
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711]) * 255
# config name -> (dataset type, data_root, train / val / test annotation,
# num_classes, classes file)
EXPECTED = {
    'imagenet-lt': ('LongTailListDataset', 'data/imagenet',
                    ('ImageNet_LT_train.txt', 'ImageNet_LT_val.txt',
                     'ImageNet_LT_test.txt'), 1000, 'labels.txt'),
    'places-lt': ('LongTailListDataset', 'data/places365',
                  ('Places_LT_train.txt', 'Places_LT_val.txt',
                   'Places_LT_test.txt'), 365, 'labels.txt'),
    'inat2018': ('INaturalist2018', 'data/inat2018',
                 ('train2018.json', 'val2018.json', 'val2018.json'), 8142,
                 'categories.json'),
}


def load_tiny_tool():
    path = osp.join(REPO, 'tools', 'data', 'make_tiny_lt.py')
    spec = importlib.util.spec_from_file_location('make_tiny_lt', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def cfg_options(*pairs):
    """Parse ``--cfg-options`` exactly as MMPretrain's tools/train.py."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options


def loaders(cfg):
    return (cfg.train_dataloader, cfg.val_dataloader, cfg.test_dataloader)


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_config_contents(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, f'{name}.py'))
    dataset_type, root, anns, num_classes, classes = EXPECTED[name]
    assert cfg.custom_imports == dict(
        imports=['vlltr_mm'], allow_failed_imports=False)
    for loader, ann in zip(loaders(cfg), anns):
        assert loader.dataset.type == dataset_type
        assert loader.dataset.data_root == root
        assert loader.dataset.ann_file == ann
        assert loader.dataset.num_classes == num_classes
        assert loader.dataset.classes == classes
        assert loader.batch_size == cfg.batch_size
    assert cfg.train_dataloader.sampler.type == 'SquareRootSampler'
    for loader in loaders(cfg)[1:]:
        assert loader.sampler == dict(type='DefaultSampler', shuffle=False)
        assert loader.dataset.test_mode
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.type == 'LongTailAccuracy'
        assert evaluator.topk == (1, 5)
        assert evaluator.train_ann_file == f'{root}/{anns[0]}'

    pre = cfg.data_preprocessor
    np.testing.assert_allclose(pre.mean, CLIP_MEAN)
    np.testing.assert_allclose(pre.std, CLIP_STD)
    assert pre.to_rgb and pre.num_classes == num_classes

    train = {t['type']: t for t in cfg.train_pipeline}
    assert list(train) == [
        'LoadImageFromFile', 'RandomResizedCrop', 'RandomFlip',
        'RandAugment', 'RandomErasing', 'PackInputs']
    assert train['RandomResizedCrop'] == dict(
        type='RandomResizedCrop', scale=224, backend='pillow',
        interpolation='bicubic')
    aug = train['RandAugment']
    assert (aug.policies, aug.num_policies, aug.total_level,
            aug.magnitude_level, aug.magnitude_std) == (
                'timm_increasing', 2, 10, 9, 0.5)
    # Fill values are BGR: images are loaded BGR, to_rgb acts later.
    assert aug.hparams.pad_val == [round(x) for x in CLIP_MEAN[::-1]]
    erase = train['RandomErasing']
    assert (erase.erase_prob, erase.mode, erase.min_area_ratio) == (
        0.25, 'rand', 0.02)
    assert erase.max_area_ratio == pytest.approx(1 / 3)
    np.testing.assert_allclose(erase.fill_color, CLIP_MEAN[::-1])
    np.testing.assert_allclose(erase.fill_std, CLIP_STD[::-1])
    test = [t['type'] for t in cfg.test_pipeline]
    assert test == ['LoadImageFromFile', 'ResizeEdge', 'CenterCrop',
                    'PackInputs']
    assert cfg.test_pipeline[1] == dict(
        type='ResizeEdge', scale=256, edge='short', backend='pillow',
        interpolation='bicubic')
    assert cfg.test_pipeline[2].crop_size == 224


@pytest.mark.parametrize('name', sorted(EXPECTED))
def test_cfg_options_override_data_root(name):
    cfg = Config.fromfile(osp.join(CFG_DIR, f'{name}.py'))
    cfg.merge_from_dict(cfg_options(
        'train_dataloader.dataset.data_root=/mnt/x',
        'test_dataloader.dataset.data_root=/mnt/y',
        'val_evaluator.train_ann_file=/mnt/x/train.txt'))
    assert cfg.train_dataloader.dataset.data_root == '/mnt/x'
    assert cfg.test_dataloader.dataset.data_root == '/mnt/y'
    assert cfg.val_dataloader.dataset.data_root == EXPECTED[name][1]
    assert cfg.val_evaluator.train_ann_file == '/mnt/x/train.txt'
    # The rest of the dataset dict survives the merge.
    assert cfg.train_dataloader.dataset.ann_file == EXPECTED[name][2][0]


def test_imagenet_lt_config_builds_on_tiny_data(tmp_path):
    """Datasets, sampler, metric and preprocessing of the real config."""
    root = str(tmp_path / 'tiny')
    tiny = load_tiny_tool().make_tiny_lt(root)
    cfg = Config.fromfile(osp.join(CFG_DIR, 'imagenet-lt.py'))
    pairs = [f'{k}_dataloader.dataset.data_root={root}'
             for k in ('train', 'val', 'test')]
    pairs += [f'{k}_dataloader.dataset.num_classes=6'
              for k in ('train', 'val', 'test')]
    pairs += [f'{k}_evaluator.{key}' for k in ('val', 'test')
              for key in (f'train_ann_file={root}/ImageNet_LT_train.txt',
                          'num_classes=6')]
    cfg.merge_from_dict(cfg_options(*pairs))

    train = DATASETS.build(cfg.train_dataloader.dataset)
    assert train.CLASSES == tuple(tiny['classes'])
    np.testing.assert_array_equal(train.class_counts, tiny['train_counts'])
    torch.manual_seed(0)
    item = train[0]
    assert item['inputs'].shape == (3, 224, 224)
    test = DATASETS.build(cfg.test_dataloader.dataset)
    assert len(test) == 60
    assert test[5]['inputs'].shape == (3, 224, 224)

    sampler = DATA_SAMPLERS.build(
        cfg.train_dataloader.sampler, default_args=dict(dataset=train))
    assert len(list(iter(sampler))) == len(train)
    metric = METRICS.build(cfg.val_evaluator)
    np.testing.assert_array_equal(metric.class_counts, tiny['train_counts'])

    pre = MODELS.build(dict(type='ClsDataPreprocessor',
                            **cfg.data_preprocessor))
    batch = pre(dict(inputs=[test[5]['inputs']],
                     data_samples=[test[5]['data_samples']]))
    # BGR uint8 -> RGB, CLIP-normalised.
    raw = test[5]['inputs'].flip(0).float()
    expected = (raw - torch.tensor(CLIP_MEAN).float().view(3, 1, 1)) / \
        torch.tensor(CLIP_STD).float().view(3, 1, 1)
    torch.testing.assert_close(batch['inputs'][0], expected)


def test_places_lt_config_builds(tmp_path):
    root = tmp_path / 'places'
    load_tiny_tool().make_tiny_lt(str(root), num_classes=3, counts=[3, 2, 1],
                                  val_per_class=1, test_per_class=1)
    for split in ('train', 'val', 'test'):
        shutil.copy(root / f'ImageNet_LT_{split}.txt',
                    root / f'Places_LT_{split}.txt')
    cfg = Config.fromfile(osp.join(CFG_DIR, 'places-lt.py'))
    for loader in loaders(cfg):
        loader.dataset.update(data_root=str(root), num_classes=3,
                              pipeline=[])
        ds = DATASETS.build(loader.dataset)
        # Class names come from labels.txt under the overridden data_root.
        assert ds.CLASSES == ('red_horizontal', 'green_diagonal',
                              'blue_vertical')
