"""Train -> save -> load -> resume with real MMEngine runners, torch >= 2.6.

No global ``weights_only=False``: torch's own default stays in force and
arbitrary objects are still refused.
"""
import os.path as osp
import pickle

import pytest
import torch
import torch.nn as nn
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch.utils.data import Dataset

import vlltr_mm  # noqa: F401  (registers the safe globals)
from vlltr_mm.utils.checkpoint import load_local_checkpoint


class ToyModel(BaseModel):

    def __init__(self):
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, labels, mode='tensor'):
        out = self.linear(torch.stack(inputs) if isinstance(inputs, list)
                          else inputs)
        if mode == 'loss':
            target = torch.stack(labels) if isinstance(labels,
                                                       list) else labels
            return dict(loss=((out.squeeze(-1) - target)**2).mean())
        return out


class ToyData(Dataset):
    metainfo = dict(classes=('a', ))

    def __len__(self):
        return 8

    def __getitem__(self, i):
        x = torch.tensor([float(i), 1.0])
        return dict(inputs=x, labels=torch.tensor(2.0 * i))


def make_runner(work_dir, max_epochs, **kwargs):
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=dict(
            dataset=ToyData(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            batch_size=4,
            num_workers=0),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        param_scheduler=dict(type='MultiStepLR', milestones=[1]),
        train_cfg=dict(by_epoch=True, max_epochs=max_epochs),
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=1)),
        randomness=dict(seed=0),
        # mmpretrain, as every other test module: a Runner leaves its
        # scope as the default scope of later builds in this process.
        default_scope='mmpretrain',
        experiment_name=f'toy_{max_epochs}_{osp.basename(str(work_dir))}',
        **kwargs)


def test_save_load_resume(tmp_path):
    runner = make_runner(tmp_path, max_epochs=2)
    runner.train()
    ckpt = osp.join(tmp_path, 'epoch_2.pth')
    # torch's default (weights_only=True on torch >= 2.6) loads it.
    loaded = torch.load(ckpt, map_location='cpu')
    assert loaded['meta']['epoch'] == 2
    assert 'message_hub' in loaded and 'optimizer' in loaded
    weight = loaded['state_dict']['linear.weight']

    # --resume: continues from epoch 2 to 3.
    resumed = make_runner(tmp_path, max_epochs=3, resume=True)
    resumed.train()
    assert resumed.epoch == 3
    assert osp.isfile(osp.join(tmp_path, 'epoch_3.pth'))

    # load_from: weights only, then a test-style load with mmengine.
    fresh = make_runner(tmp_path / 'b', max_epochs=1, load_from=ckpt)
    fresh.load_or_resume()
    torch.testing.assert_close(fresh.model.linear.weight, weight)


class Evil:

    def __reduce__(self):
        return (print, ('pwned', ))


def test_safety_not_switched_off(tmp_path):
    path = tmp_path / 'evil.pth'
    with open(path, 'wb') as f:
        pickle.dump({'x': Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match='Weights only load'):
        torch.load(path)


class ReachesFurther:
    """Pickles as ``getattr(HistoryBuffer, '__subclasses__')``."""

    def __reduce__(self):
        from mmengine.logging import HistoryBuffer
        return (getattr, (HistoryBuffer, '__subclasses__'))


def test_getattr_limited_to_history_buffer_methods(tmp_path):
    path = tmp_path / 'reach.pth'
    torch.save({'x': ReachesFurther()}, path)
    with pytest.raises(pickle.UnpicklingError, match=r"getattr\(<class "
                       r"'mmengine\.logging\.history_buffer\.HistoryBuffer'>"
                       r", '__subclasses__'\) is not allowed"):
        torch.load(path)


def test_runner_names_a_refused_checkpoint(tmp_path):
    """tools/train.py / test.py load through the same loader as get_model:
    the refusal names the file and the command that keeps the weights."""
    first = make_runner(tmp_path / 'a', max_epochs=1)
    first.train()
    ckpt = torch.load(tmp_path / 'a' / 'epoch_1.pth')
    ckpt['meta']['args'] = Evil()  # pickled as print('pwned')
    path = str(tmp_path / 'evil.pth')
    torch.save(ckpt, path)
    runner = make_runner(tmp_path / 'b', max_epochs=1, load_from=path)
    with pytest.raises(pickle.UnpicklingError, match=(
            rf'Checkpoint {path} holds a Python object \(print\) beside '
            r'its weights(.|\n)*python -c .*evil_weights\.pth')):
        runner.load_or_resume()


@pytest.mark.skipif(torch.cuda.is_available(), reason='needs no CUDA')
def test_loader_leaves_other_errors_alone(tmp_path):
    """A CUDA map_location on a CPU machine is not the file's fault."""
    path = tmp_path / 'w.pth'
    torch.save({'w': torch.zeros(2)}, path)
    with pytest.raises(RuntimeError, match='CUDA') as info:
        load_local_checkpoint(str(path), map_location='cuda')
    assert 'truncated' not in str(info.value)
