"""The balanced-softmax and cRT example configs: contents, models, the cRT
freeze, and short real runs of tools/train.py."""
import os
import os.path as osp
import re
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.optim import build_optim_wrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample
from torch.nn.modules.batchnorm import _BatchNorm

import vlltr_mm  # noqa: F401  (registers everything)
from vlltr_mm.models.losses import BalancedSoftmaxLoss

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
EXAMPLES = osp.join(ROOT, 'configs', 'examples')
BALANCED = osp.join(EXAMPLES,
                    'resnet18_balanced-softmax_tiny-lt_from-mmpretrain.py')
CRT = osp.join(EXAMPLES, 'crt_tiny-lt.py')
BASELINE = osp.join(EXAMPLES, 'baseline_ce_tiny-lt.py')


pytestmark = pytest.mark.usefixtures('one_thread')


def batch(model, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 3, 32, 32), generator=g).float()
    samples = [DataSample().set_gt_label(i % 6) for i in range(n)]
    return model.data_preprocessor(
        dict(inputs=list(images), data_samples=samples), training=True)


def test_balanced_softmax_config_builds():
    cfg = Config.fromfile(BALANCED)
    assert cfg.custom_imports.imports == ['vlltr_mm']
    assert cfg.model.head.loss == dict(
        type='BalancedSoftmaxLoss', num_classes=6)
    assert cfg.custom_hooks == [dict(type='ClassPriorHook')]
    # No hand-typed counts anywhere.
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator == dict(type='LongTailAccuracy')
    assert 'class_counts' not in cfg.model.head
    assert cfg.train_dataloader.sampler == dict(
        type='DefaultSampler', shuffle=True)
    assert cfg.train_dataloader.dataset.type == 'LongTailListDataset'
    # Inherited from MMPretrain's ResNet-18 recipe.
    assert cfg.model.backbone.type == 'ResNet'
    assert cfg.model.backbone.depth == 18

    model = MODELS.build(cfg.model)
    loss = model.head.loss_module
    assert isinstance(loss, BalancedSoftmaxLoss) and loss.tau == 1.0
    assert not loss.class_prior.is_set
    data = batch(model)
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        model(**data, mode='loss')
    loss.set_class_counts([150, 100, 40, 20, 8, 3])
    losses = model(**data, mode='loss')
    assert torch.isfinite(losses['loss'])


def save_stage1(path):
    """A stage-1 checkpoint of the baseline model, as tools/train.py
    writes it (state_dict + meta)."""
    torch.manual_seed(1)
    model = MODELS.build(Config.fromfile(BASELINE).model)
    model.init_weights()
    with torch.no_grad():  # make BN statistics non-default
        for m in model.modules():
            if isinstance(m, _BatchNorm):
                m.running_mean.uniform_(-1, 1)
                m.running_var.uniform_(0.5, 2)
    state = model.state_dict()
    torch.save({'state_dict': state, 'meta': {'epoch': 12}}, path)
    return state


def test_crt_config_freezes_backbone_and_reinits_head(tmp_path):
    cfg = Config.fromfile(CRT)
    assert cfg.train_dataloader.sampler == dict(type='ClassAwareSampler')
    assert cfg.get('load_from') is None
    assert cfg.model.backbone.frozen_stages == 4
    assert cfg.model.backbone.init_cfg.checkpoint == (
        'work_dirs/baseline_ce_tiny-lt/epoch_12.pth')
    assert cfg.train_cfg.max_epochs <= 4

    stage1 = save_stage1(tmp_path / 'epoch_12.pth')
    cfg.model.backbone.init_cfg.checkpoint = str(tmp_path / 'epoch_12.pth')
    torch.manual_seed(2)
    model = MODELS.build(cfg.model)
    model.init_weights()
    state = model.state_dict()
    backbone = [k for k in state if k.startswith('backbone.')]
    assert backbone
    for key in backbone:
        assert torch.equal(state[key], stage1[key]), key
    # The classifier is new.
    assert not torch.equal(state['head.fc.weight'],
                           stage1['head.fc.weight'])

    model.train()
    assert not any(p.requires_grad for p in model.backbone.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    norms = [m for m in model.backbone.modules()
             if isinstance(m, _BatchNorm)]
    assert norms and not any(m.training for m in norms)

    # A real optimiser step of the config's optimiser changes only the
    # head: weights and BatchNorm statistics of the backbone stay.
    optim = build_optim_wrapper(model, cfg.optim_wrapper)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = model(**batch(model), mode='loss')
    optim.update_params(losses['loss'])
    after = model.state_dict()
    for key in backbone:
        assert torch.equal(after[key], before[key]), key
    assert not torch.equal(after['head.fc.weight'],
                           before['head.fc.weight'])


def run(args):
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def options(root, *extra):
    return ['--cfg-options'] + [
        f'{k}.dataset.data_root={root}'
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [f'{k}_dataloader.num_workers=0' for k in ('train', 'val', 'test')
         ] + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *extra]


@pytest.fixture(scope='module')
def tiny_lt(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('tiny_lt'))
    run(['tools/data/make_tiny_lt.py', root])
    return root


def train_labels(root):
    return np.array([
        int(line.split()[-1])
        for line in open(osp.join(root, 'ImageNet_LT_train.txt'))
        if line.strip()
    ])


def one_batch_per_class(root):
    """Indices of the first 8 training images of each class (3 of the
    last): one iteration of 32 with drop_last, and their counts."""
    labels = train_labels(root)
    indices = [int(i) for c in range(6)
               for i in np.flatnonzero(labels == c)[:8]]
    counts = np.bincount(labels[indices], minlength=6).tolist()
    assert counts == [8, 8, 8, 8, 8, 3]
    return 'train_dataloader.dataset.indices=[' + ','.join(
        map(str, indices)) + ']', counts


@pytest.mark.slow
def test_balanced_softmax_config_trains(tiny_lt, tmp_path):
    subset, counts = one_batch_per_class(tiny_lt)
    work = str(tmp_path / 'work')
    out = run(['tools/train.py', BALANCED, '--work-dir', work,
               *options(tiny_lt, subset)])
    assert re.search(r'Epoch\(train\) +\[1\]\[1/1\]', out)
    assert ('ClassPriorHook: training set has 6 classes, 3..8 images per '
            'class; set on head.loss_module') in out
    assert 'accuracy/few' in out
    state = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu',
                       weights_only=True)['state_dict']
    assert state['head.loss_module.class_prior.counts'].tolist() == counts


@pytest.mark.slow
def test_crt_config_trains(tiny_lt, tmp_path):
    ckpt1 = str(tmp_path / 'epoch_12.pth')
    before = save_stage1(ckpt1)
    subset, _ = one_batch_per_class(tiny_lt)
    work = str(tmp_path / 'crt')
    out = run(['tools/train.py', CRT, '--work-dir', work,
               *options(tiny_lt, subset, 'val_evaluator.train_ann_file='
                        f'{tiny_lt}/ImageNet_LT_train.txt',
                        f'model.backbone.init_cfg.checkpoint={ckpt1}')])
    assert re.search(r'Epoch\(train\) +\[1\]\[2/2\]', out)  # no drop_last
    assert 'accuracy/few' in out
    after = torch.load(osp.join(work, 'epoch_1.pth'), map_location='cpu',
                       weights_only=True)['state_dict']
    # Backbone weights and BatchNorm statistics are stage 1's, bit for bit;
    # the classifier was re-initialised and trained.
    backbone = [k for k in before if k.startswith('backbone.')]
    assert backbone and all(
        torch.equal(before[k], after[k]) for k in backbone)
    assert not torch.allclose(before['head.fc.weight'],
                              after['head.fc.weight'])
