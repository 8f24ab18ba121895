"""ClassPriorHook: class counts from the training set to the model and the
metrics, in a stand-in runner and in real tools/train.py / tools/test.py
runs."""
import json
import os
import os.path as osp
import shutil
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.nn as nn
from mmengine.dataset import (
    ClassBalancedDataset,
    ConcatDataset,
    RepeatDataset,
)
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmpretrain.datasets import CustomDataset
from mmpretrain.evaluation import Accuracy
from mmpretrain.registry import HOOKS
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401  (registers everything)
from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.engine.hooks import ClassPriorHook
from vlltr_mm.engine.hooks.class_prior_hook import dataset_class_counts
from vlltr_mm.evaluation.metrics import LongTailAccuracy
from vlltr_mm.models.heads import LogitAdjustedLinearClsHead

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')
COUNTS = [5, 2, 3, 1]


def write_list(path, counts):
    lines = [
        f'train/c{c}/{i}.png {c}' for c, n in enumerate(counts)
        for i in range(n)
    ]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


# dataset_class_counts


def test_counts_of_long_tail_list_dataset(tmp_path):
    ann = write_list(tmp_path / 'train.txt', COUNTS)
    dataset = LongTailListDataset(
        ann, classes=['a', 'b', 'c', 'd'], check_files=False)
    counts = dataset_class_counts(dataset)
    assert counts.dtype == np.int64 and counts.tolist() == COUNTS
    # A class without training images (here the last) is kept.
    ann = write_list(tmp_path / 'empty.txt', [4, 1, 0])
    empty = LongTailListDataset(
        ann, classes=['a', 'b', 'c', 'd'], check_files=False)
    assert dataset_class_counts(empty).tolist() == [4, 1, 0, 0]
    # Wrappers are unwrapped: the prior is the dataset's, not the
    # repeated / re-balanced stream's.
    assert dataset_class_counts(RepeatDataset(dataset, times=3)).tolist() \
        == COUNTS
    balanced = ClassBalancedDataset(dataset, oversample_thr=0.5)
    assert dataset_class_counts(balanced).tolist() == COUNTS
    # Any object with a ``dataset`` attribute, nested.
    nested = SimpleNamespace(dataset=SimpleNamespace(dataset=balanced))
    assert dataset_class_counts(nested).tolist() == COUNTS


def test_counts_of_stock_dataset_via_gt_labels(tmp_path):
    # MMPretrain's CustomDataset has no class_counts: get_gt_labels() is
    # counted over metainfo['classes'], keeping trailing empty classes.
    ann = tmp_path / 'train.txt'
    ann.write_text('a.png 0\nb.png 2\nc.png 0\nd.png 0\ne.png 2\n')
    dataset = CustomDataset(
        ann_file=str(ann), metainfo=dict(classes=['x', 'y', 'z', 'w']))
    assert not hasattr(dataset, 'class_counts')
    assert dataset_class_counts(dataset).tolist() == [3, 0, 2, 0]
    wrapped = RepeatDataset(dataset, times=2)
    assert dataset_class_counts(wrapped).tolist() == [3, 0, 2, 0]
    # Without class names the largest label bounds the classes.
    dataset = CustomDataset(ann_file=str(ann))
    assert dataset_class_counts(dataset).tolist() == [3, 0, 2]
    with pytest.raises(TypeError, match='cannot count the classes of '
                       'ConcatDataset'):
        dataset_class_counts(ConcatDataset([dataset, dataset]))


# The hook in a stand-in runner


class Model(nn.Module):

    def __init__(self, head_counts=None, loss_counts=None, num_classes=4):
        super().__init__()
        self.backbone = nn.Linear(3, 3)
        self.head = LogitAdjustedLinearClsHead(
            num_classes, 3, class_counts=head_counts,
            loss=dict(type='LogitAdjustedLoss', class_counts=loss_counts,
                      num_classes=num_classes))


def fake_runner(model, train_counts=COUNTS, metrics=()):
    dataset = SimpleNamespace(class_counts=np.array(train_counts))
    evaluator = SimpleNamespace(metrics=list(metrics))
    messages = []
    return SimpleNamespace(
        model=model,
        train_dataloader=SimpleNamespace(dataset=dataset),
        val_evaluator=evaluator,
        test_evaluator=evaluator,
        logger=SimpleNamespace(messages=messages, info=messages.append),
    )


def logged(runner):
    return '\n'.join(runner.logger.messages)


def counts_of(module):
    return module.class_prior.counts.tolist()


def test_hook_sets_model_and_metrics():
    metric, accuracy = LongTailAccuracy(), Accuracy()
    runner = fake_runner(Model(), metrics=[metric, accuracy])
    hook = HOOKS.build(dict(type='ClassPriorHook'))
    assert isinstance(hook, ClassPriorHook)
    hook.before_train(runner)
    head = runner.model.head
    assert counts_of(head) == COUNTS
    assert counts_of(head.loss_module) == COUNTS
    assert ('training set has 4 classes, 1..5 images per class; set on '
            'head, head.loss_module') in logged(runner)
    assert metric.class_counts is None
    hook.before_val(runner)
    assert metric.class_counts.tolist() == COUNTS
    assert 'from the training set set on LongTailAccuracy' in logged(runner)
    # The groups follow the training counts (all few-shot here).
    assert metric.group_masks['few'].tolist() == [True] * 4
    # Once set, the counts are no longer "explicit" and training again
    # (e.g. a second train() call) replaces them.
    hook.before_train(fake_runner(runner.model, train_counts=[1, 2, 3, 4]))
    assert counts_of(head) == [1, 2, 3, 4]


def test_hook_leaves_explicit_counts():
    explicit = [9, 9, 9, 9]
    metric = LongTailAccuracy(class_counts=explicit)
    unset = LongTailAccuracy()
    model = Model(head_counts=explicit)
    runner = fake_runner(model, metrics=[metric, unset])
    hook = ClassPriorHook()
    hook.before_train(runner)
    hook.before_val(runner)
    assert counts_of(model.head) == explicit
    assert counts_of(model.head.loss_module) == COUNTS
    assert 'set on head.loss_module' in logged(runner)
    assert metric.class_counts.tolist() == explicit
    assert unset.class_counts.tolist() == COUNTS
    # Nothing to do: no message about metrics.
    everything = Model(head_counts=explicit, loss_counts=explicit)
    runner = fake_runner(everything, metrics=[metric])
    hook = ClassPriorHook()
    hook.before_train(runner)
    hook.before_test(runner)
    assert counts_of(everything.head.loss_module) == explicit
    assert 'set on no model module' in logged(runner)
    assert 'LongTailAccuracy' not in logged(runner)
    # override_explicit replaces them all.
    hook = ClassPriorHook(override_explicit=True)
    hook.before_train(runner)
    hook.before_val(runner)
    assert counts_of(everything.head) == COUNTS
    assert counts_of(everything.head.loss_module) == COUNTS
    assert metric.class_counts.tolist() == COUNTS


def test_hook_in_test_only_run_uses_checkpoint():
    trained = Model()
    trained.head.set_class_counts(COUNTS)
    trained.head.loss_module.set_class_counts(COUNTS)
    # tools/test.py: the model is built without counts, the checkpoint is
    # loaded, then before_test runs; no training dataset is touched.
    model = Model()
    model.load_state_dict(trained.state_dict())
    metric = LongTailAccuracy()
    runner = fake_runner(model, metrics=[metric])
    runner.train_dataloader = None  # must not be read
    runner._train_loop = dict(type='EpochBasedTrainLoop')  # not built
    hook = ClassPriorHook()
    hook.before_run(runner)
    hook.before_test(runner)
    assert metric.class_counts.tolist() == COUNTS
    assert 'from the checkpoint set on LongTailAccuracy' in logged(runner)

    # No counts anywhere: the metric stays unset and names the fix.
    metric = LongTailAccuracy()
    runner = fake_runner(Model(), metrics=[metric])
    ClassPriorHook().before_test(runner)
    assert metric.class_counts is None
    sample = DataSample().set_gt_label(0).set_pred_score(torch.rand(4))
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        metric.process(None, [sample.to_dict()])


class Toy(BaseModel):
    """LogitAdjustedLinearClsHead over 3-d inputs."""

    def __init__(self, head_counts=None, loss_counts=None):
        super().__init__()
        self.head = LogitAdjustedLinearClsHead(
            3, 3, posthoc_tau=1.0, class_counts=head_counts,
            loss=dict(type='LogitAdjustedLoss', class_counts=loss_counts))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        feats = (torch.stack(inputs), )
        if mode == 'loss':
            return self.head.loss(feats, data_samples)
        return self.head.predict(feats, data_samples)


def toy_runner(tmp_path, model, counts=(6, 4, 2), **kwargs):
    ann = write_list(tmp_path / 'train.txt', counts)
    items = torch.randn(
        sum(counts), 3, generator=torch.Generator().manual_seed(0))
    dataset = LongTailListDataset(
        ann, classes=['a', 'b', 'c'], check_files=False,
        pipeline=[
            lambda info: dict(
                inputs=items[info['sample_idx']],
                data_samples=DataSample().set_gt_label(info['gt_label']))
        ])
    loader = dict(
        dataset=dataset,
        sampler=dict(type='DefaultSampler', shuffle=False),
        batch_size=4,
        collate_fn=dict(type='pseudo_collate'))
    kwargs.setdefault('custom_hooks', [dict(type='ClassPriorHook')])
    return Runner(
        model=model,
        work_dir=str(tmp_path / 'work'),
        train_dataloader=loader,
        train_cfg=dict(by_epoch=True, max_epochs=1, val_interval=1),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        val_dataloader=loader,
        val_cfg=dict(),
        default_scope='mmpretrain',
        # Unique logger / visualizer instances for runners made within
        # the same second.
        experiment_name=f'class_prior_{tmp_path.name}',
        **kwargs)


def test_hook_in_real_runner_keeps_explicit_counts(tmp_path):
    """A real in-process training run whose config gives every count:
    none is overwritten by the training set's."""
    explicit = [1, 2, 30]
    runner = toy_runner(
        tmp_path, Toy(head_counts=explicit, loss_counts=explicit),
        val_evaluator=[
            dict(type='LongTailAccuracy', class_counts=explicit),
            dict(type='LongTailAccuracy', prefix='from_hook')
        ])
    runner.train()
    head = runner.model.head
    assert counts_of(head) == explicit
    assert counts_of(head.loss_module) == explicit
    metrics = runner.val_evaluator.metrics
    assert metrics[0].class_counts.tolist() == explicit
    assert metrics[1].class_counts.tolist() == [6, 4, 2]


@pytest.mark.parametrize('update_buffers', [False, True])
def test_hook_with_ema_hook(tmp_path, update_buffers):
    """EMAHook deep-copies the model in before_run: the copy must get the
    counts too (an empty buffer in it broke the first EMA update), and the
    EMA weights saved as the checkpoint's state_dict carry them."""
    runner = toy_runner(
        tmp_path, Toy(),
        val_evaluator=dict(type='LongTailAccuracy'),
        custom_hooks=[
            dict(type='ClassPriorHook'),
            dict(type='EMAHook', update_buffers=update_buffers)
        ])
    runner.train()
    ckpt = torch.load(tmp_path / 'work' / 'epoch_1.pth', weights_only=True)
    for state in (ckpt['state_dict'], ckpt['ema_state_dict']):
        prefix = 'module.' if 'steps' in state else ''
        for key in ('head.class_prior.counts',
                    'head.loss_module.class_prior.counts'):
            assert state[prefix + key].tolist() == [6, 4, 2], key


# Real tools/train.py and tools/test.py runs


def run(args, ok=True):
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, capture_output=True, text=True,
        timeout=600, env=dict(os.environ, OMP_NUM_THREADS='1'))
    out = proc.stdout + proc.stderr
    if ok:
        assert proc.returncode == 0, out[-4000:]
    else:
        assert proc.returncode != 0, out[-4000:]
    return out


LA_CONFIG = f"""
_base_ = [{BASELINE!r}]
# Training-time logit adjustment, post-hoc adjustment at prediction (to
# check that the head's prior reaches tools/test.py) and a metric whose
# counts come from the hook.
model = dict(
    head=dict(
        type='LogitAdjustedLinearClsHead',
        posthoc_tau=0.5,
        loss=dict(_delete_=True, type='LogitAdjustedLoss', tau=1.0)))
train_dataloader = dict(
    sampler=dict(_delete_=True, type='DefaultSampler', shuffle=True))
val_evaluator = dict(_delete_=True, type='LongTailAccuracy', topk=(1, ))
test_evaluator = val_evaluator
custom_hooks = [dict(type='ClassPriorHook')]
"""


def options(root, *extra):
    return ['--cfg-options'] + [
        f'{k}.dataset.data_root={root}'
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [
        f'{k}_dataloader.num_workers=0' for k in ('train', 'val', 'test')
    ] + ['train_cfg.max_epochs=1', 'train_cfg.val_interval=1', *extra]


def list_counts(root):
    """Per-class counts of the training list, counted here."""
    num_classes = len(open(osp.join(root, 'labels.txt')).read().split())
    labels = [
        int(line.split()[-1])
        for line in open(osp.join(root, 'ImageNet_LT_train.txt'))
        if line.strip()
    ]
    return np.bincount(labels, minlength=num_classes).tolist()


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
    """tiny-LT data, the config and a checkpoint of one training epoch."""
    tmp = tmp_path_factory.mktemp('class_prior')
    data = str(tmp / 'tiny_lt')
    run(['tools/data/make_tiny_lt.py', data])
    config = tmp / 'la_tiny-lt.py'
    config.write_text(LA_CONFIG)
    work = str(tmp / 'work')
    out = run(['tools/train.py', str(config), '--work-dir', work,
               *options(data)])
    return SimpleNamespace(
        tmp=tmp, data=data, config=str(config), log=out,
        ckpt=osp.join(work, 'epoch_1.pth'))


@pytest.mark.slow
def test_train_puts_training_counts_in_checkpoint(trained):
    counts = list_counts(trained.data)
    assert counts == [150, 100, 40, 20, 8, 3]
    state = torch.load(trained.ckpt, map_location='cpu',
                       weights_only=True)['state_dict']
    for key in ('head.class_prior.counts',
                'head.loss_module.class_prior.counts'):
        assert state[key].dtype == torch.int64
        assert state[key].tolist() == counts, key
    assert ('ClassPriorHook: training set has 6 classes, 3..150 images per '
            'class; set on head, head.loss_module') in trained.log
    assert ('ClassPriorHook: class counts from the training set set on '
            'LongTailAccuracy') in trained.log
    assert 'accuracy/few' in trained.log


@pytest.mark.slow
def test_test_tool_needs_no_training_list(trained, tmp_path):
    # Reference: counts typed in as the training list file, which exists.
    ref_file = str(tmp_path / 'with_list.json')
    run(['tools/test.py', trained.config, trained.ckpt, '--work-dir',
         str(tmp_path / 'a'), '--out', ref_file, '--out-item', 'metrics',
         *options(trained.data,
                  f'test_evaluator.train_ann_file={trained.data}/'
                  'ImageNet_LT_train.txt')])
    # The same checkpoint with the training list renamed away: the head's
    # prior and the metric's counts come from the checkpoint.
    data = str(tmp_path / 'tiny_lt')
    shutil.copytree(trained.data, data)
    os.rename(osp.join(data, 'ImageNet_LT_train.txt'),
              osp.join(data, 'away.txt'))
    out_file = str(tmp_path / 'without_list.json')
    out = run(['tools/test.py', trained.config, trained.ckpt, '--work-dir',
               str(tmp_path / 'b'), '--out', out_file, '--out-item',
               'metrics', *options(data)])
    assert ('ClassPriorHook: class counts from the checkpoint set on '
            'LongTailAccuracy') in out
    ref, got = json.load(open(ref_file)), json.load(open(out_file))
    assert set(got) == {'accuracy/top1', 'accuracy/many', 'accuracy/medium',
                        'accuracy/few'}
    assert got == ref
    for key, value in got.items():
        assert f'{key}: {value:.4f}' in out


@pytest.mark.slow
def test_test_tool_without_hook_or_counts_fails(trained, tmp_path):
    out = run(['tools/test.py', trained.config, trained.ckpt, '--work-dir',
               str(tmp_path), *options(trained.data, 'custom_hooks=[]')],
              ok=False)
    assert 'RuntimeError' in out
    assert 'LongTailAccuracy has no training class counts' in out
    assert "dict(type='ClassPriorHook')" in out
