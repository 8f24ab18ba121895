"""CheckpointCheckHook with real MMEngine runners; the LGR anchor flag."""
import os
import os.path as osp

import pytest
import torch
import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner, load_state_dict
from torch.utils.data import Dataset

import vlltr_mm  # noqa: F401  (registers the hooks)
from vlltr_mm.models.heads import LGRHead
from vlltr_mm.utils.checkpoint import state_dict_mismatch


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.body = nn.Linear(2, 2)
        self.head = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        # default_collate has stacked the batch.
        out = self.head(self.body(inputs))
        if mode == 'loss':
            return dict(loss=((out.squeeze(-1) - labels)**2).mean())
        return out


class ToyData(Dataset):

    def __len__(self):
        return 8

    def __getitem__(self, i):
        return dict(inputs=torch.tensor([float(i), 1.0]),
                    labels=torch.tensor(0.1 * i))


class PoisonHook(Hook):
    """Makes the weights NaN after the last iteration; the loss of that
    iteration was still finite."""

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        if batch_idx == 1:
            runner.model.body.weight.data.fill_(float('nan'))


class Snapshot(Hook):
    """Copies of the weights before and right after the checkpoint load."""

    def __init__(self):
        self.states = []

    def _take(self, runner):
        self.states.append(
            {k: v.clone() for k, v in runner.model.state_dict().items()})

    before_run = before_train = _take


def make_runner(work_dir, **kwargs):
    check = kwargs.pop('check', {})
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=1),
        default_hooks=dict(
            checkpoint=dict(type='CheckpointHook', interval=1),
            checkpoint_check=dict(type='CheckpointCheckHook', **check)),
        default_scope='mmpretrain',
        experiment_name=f'check_{osp.basename(str(work_dir))}',
        **kwargs)


def test_state_dict_mismatch_by_hand():
    model = dict(a=torch.zeros(2, 3), b=torch.zeros(4), lazy=torch.zeros(0))
    ckpt = dict(a=torch.zeros(3, 2), c=torch.zeros(1), lazy=torch.zeros(5))
    missing, unexpected, mismatched = state_dict_mismatch(model, ckpt)
    assert missing == ['b'] and unexpected == ['c']
    # An empty model tensor is a placeholder sized by what it loads.
    assert mismatched == ['a: checkpoint (3, 2) vs model (2, 3)']


def test_no_checkpoint_from_nonfinite_weights(tmp_path):
    runner = make_runner(tmp_path, custom_hooks=[PoisonHook()])
    with pytest.raises(RuntimeError, match=r'Not saving a checkpoint at '
                       r'epoch 1.*1 weight tensors are NaN/Inf \(body.weight'):
        runner.train()
    assert not [f for f in os.listdir(tmp_path) if f.endswith('.pth')]


def test_partial_load_only_where_allowed(tmp_path):
    torch.manual_seed(0)
    state = {'body.weight': torch.eye(2), 'body.bias': torch.zeros(2),
             'text.weight': torch.ones(1)}  # no head.*, one extra tower
    ckpt = str(tmp_path / 'stage1.pth')
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    with pytest.raises(RuntimeError, match=(
            rf'Checkpoint {ckpt} \(load_from of a new training run\) does '
            r'not fit.*\n  missing keys \(2\): head.bias, head.weight\n'
            r'  unexpected keys \(1\): text.weight')):
        make_runner(tmp_path / 'strict', load_from=ckpt).train()
    runner = make_runner(
        tmp_path / 'partial', load_from=ckpt,
        check=dict(allow_missing=['head.'], allow_unexpected=['text.']))
    runner.train()
    assert runner.epoch == 1


def test_partial_load_is_one_line_and_loads_the_same(tmp_path, capsys):
    state = {'module.body.weight': torch.full((2, 2), 3.0),
             'body.bias': torch.ones(2),
             'head.weight': torch.zeros(3, 2),  # another shape
             'text.weight': torch.ones(1), 'text.bias': torch.ones(1),
             'scale': torch.ones(())}
    ckpt = str(tmp_path / 'stage1.pth')
    torch.save({'state_dict': state, 'meta': {}}, ckpt)
    snap = Snapshot()
    runner = make_runner(
        tmp_path, load_from=ckpt, custom_hooks=[snap],
        check=dict(allow_missing=['head.'],
                   allow_unexpected=['text.', 'scale'],
                   allow_mismatched=['head.']))
    runner.train()
    out = capsys.readouterr().out
    # MMEngine's key-by-key dump (print()ed, not in the log) is gone ...
    assert 'do not match exactly' not in out
    assert 'unexpected key in source' not in out
    log = open(osp.join(runner.log_dir, f'{runner.timestamp}.log')).read()
    assert (f'Partial load of {ckpt} allowed by the config: 1 missing keys '
            'keep the initial values (head. 1); 3 unexpected keys ignored '
            '(text. 2, scale 1); 1 keys of another shape keep the initial '
            'values (head. 1).') in log
    # ... and the model holds what a non-strict load gives: the fitting
    # tensors from the file, the rest as initialised.
    initial, loaded = snap.states
    assert torch.equal(loaded['body.weight'], state['module.body.weight'])
    assert torch.equal(loaded['body.bias'], state['body.bias'])
    for key in ('head.weight', 'head.bias'):
        assert torch.equal(loaded[key], initial[key])


def test_lgr_anchor_flag_needs_loaded_anchors():
    src = LGRHead(num_classes=2, in_channels=4, num_anchors=3)
    src.set_anchors(torch.randn(2, 3, 4))
    dst = LGRHead(num_classes=2, in_channels=4, num_anchors=2)
    # MMEngine's non-strict load: anchors_set fits, the anchors do not.
    load_state_dict(dst, src.state_dict(), strict=False)
    assert not dst.has_anchors
    with pytest.raises(RuntimeError, match=r'loaded anchors have shape '
                       r'\(2, 3, 4\), this head expects .* = \(2, 2, 4\)'):
        dst(torch.randn(1, 4))
    same = LGRHead(num_classes=2, in_channels=4, num_anchors=3)
    load_state_dict(same, src.state_dict(), strict=False)
    assert same.has_anchors
    torch.testing.assert_close(same.anchors, src.anchors)
