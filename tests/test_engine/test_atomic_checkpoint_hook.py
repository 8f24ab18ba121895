"""AtomicCheckpointHook with real MMEngine runners and real failed saves.

A save is made to fail for real by a folder that already holds the
checkpoint's name: the rename into place then fails (EISDIR), after
MMEngine has decided which older files the save makes obsolete.
"""
import glob
import os.path as osp

import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.runner import Runner
from test_checkpoint_check_hook import ToyData, ToyModel

import vlltr_mm  # noqa: F401  (registers the hook and the backend)
from vlltr_mm.engine.hooks.atomic_checkpoint_hook import (
    AtomicCheckpointHook,
    AtomicLocalBackend,
)


class RisingScore(BaseMetric):
    """``score`` = the number of evaluations so far: every epoch is a new
    best, so every epoch replaces ``best_score_epoch_*.pth``."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def process(self, data_batch, data_samples):
        self.results.append(0)

    def compute_metrics(self, results):
        self.calls += 1
        return dict(score=float(self.calls))


def make_runner(work_dir, epochs):
    loader = dict(dataset=ToyData(),
                  sampler=dict(type='DefaultSampler', shuffle=False),
                  collate_fn=dict(type='default_collate'), batch_size=4,
                  num_workers=0)
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        train_dataloader=loader,
        val_dataloader=loader,
        val_evaluator=[RisingScore()],
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.01)),
        train_cfg=dict(by_epoch=True, max_epochs=epochs),
        val_cfg=dict(),
        default_hooks=dict(checkpoint=dict(
            type='AtomicCheckpointHook', interval=1, max_keep_ckpts=1,
            save_best='score', rule='greater')),
        default_scope='mmpretrain',
        experiment_name=f'atomic_{osp.basename(str(work_dir))}')


def checkpoint_files(work_dir):
    return sorted(osp.basename(p) for p in glob.glob(f'{work_dir}/*.pth'))


def temporary_files(work_dir):
    return glob.glob(f'{work_dir}/.*.tmp')


def test_saves_rotate_as_mmengine_does(tmp_path):
    runner = make_runner(tmp_path, epochs=3)
    hook = next(h for h in runner.hooks
                if isinstance(h, AtomicCheckpointHook))
    assert hook.backend_args == dict(backend='atomic_local')
    runner.train()
    assert isinstance(hook.file_backend, AtomicLocalBackend)
    # max_keep_ckpts=1 and one best file, as with CheckpointHook.
    assert checkpoint_files(tmp_path) == [
        'best_score_epoch_3.pth', 'epoch_3.pth']
    assert not temporary_files(tmp_path)
    ckpt = torch.load(tmp_path / 'epoch_3.pth', map_location='cpu')
    assert ckpt['meta']['epoch'] == 3
    with open(tmp_path / 'last_checkpoint') as f:
        assert f.read() == str(tmp_path / 'epoch_3.pth')


@pytest.mark.parametrize('blocked, kept', [
    ('epoch_2.pth', 'epoch_1.pth'),
    ('best_score_epoch_2.pth', 'best_score_epoch_1.pth'),
])
def test_failed_save_keeps_the_file_it_would_replace(tmp_path, blocked,
                                                     kept):
    # CheckpointHook deletes `kept` before it writes `blocked`; a failed
    # write then leaves no checkpoint of that kind at all.
    (tmp_path / blocked).mkdir()
    runner = make_runner(tmp_path, epochs=2)
    with pytest.raises(OSError, match=(
            rf'Could not save checkpoint {tmp_path}/{blocked} '
            rf'\([0-9.]+ MiB\): Is a directory; [0-9.]+ MiB free in '
            rf'{tmp_path}\. The earlier checkpoints there are intact')):
        runner.train()
    assert kept in checkpoint_files(tmp_path)
    assert torch.load(tmp_path / kept, map_location='cpu')['meta'][
        'epoch'] == 1
    assert not temporary_files(tmp_path)


def test_backend_replaces_files_whole(tmp_path):
    backend = AtomicLocalBackend()
    path = tmp_path / 'sub' / 'x.pth'
    backend.put(b'first', path)
    backend.put_text('second', str(path))
    assert path.read_bytes() == b'second'
    assert not temporary_files(tmp_path / 'sub')


def test_remote_or_explicit_backend_is_kept():
    hook = AtomicCheckpointHook(interval=1, out_dir='s3://bucket/run')
    assert hook.backend_args is None
    hook = AtomicCheckpointHook(interval=1,
                                backend_args=dict(backend='local'))
    assert hook.backend_args == dict(backend='local')
