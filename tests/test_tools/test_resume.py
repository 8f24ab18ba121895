"""tools/train.py --resume: exact continuation, and load_from kept when the
work dir has nothing to resume. Tiny CE baseline, 5 iterations an epoch."""
import glob
import json
import os
import os.path as osp
import shutil
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')


def train(work, opts, *extra):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(
        [sys.executable, 'tools/train.py', BASELINE, '--work-dir', work,
         *extra, '--cfg-options', *opts],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


def train_losses(work):
    """{(epoch, iter): loss} from the run's scalars.json (logged per iter)."""
    losses = {}
    for path in glob.glob(osp.join(work, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                row = json.loads(line)
                if 'loss' in row:
                    losses[(row['epoch'], row['iter'])] = row['loss']
    return losses


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory, tiny_baseline_data):
    """Data, options and a 2-epoch run without interruption."""
    root = tmp_path_factory.mktemp('resume')
    opts = ['default_hooks.logger.interval=1', 'train_cfg.val_interval=10']
    opts += tiny_baseline_data(str(root / 'data'), test_per_class=1)
    work = str(root / 'full')
    train(work, opts + ['train_cfg.max_epochs=2'])
    return dict(root=root, opts=opts, work=work)


@pytest.mark.slow
def test_resume_repeats_uninterrupted_run_exactly(uninterrupted):
    # What a run killed during epoch 2 leaves: epoch_1.pth and the
    # last_checkpoint pointer that CheckpointHook writes.
    work = str(uninterrupted['root'] / 'killed')
    os.makedirs(work)
    ckpt = osp.join(work, 'epoch_1.pth')
    shutil.copy(osp.join(uninterrupted['work'], 'epoch_1.pth'), ckpt)
    with open(osp.join(work, 'last_checkpoint'), 'w') as f:
        f.write(ckpt)
    out = train(work, uninterrupted['opts'] + ['train_cfg.max_epochs=2'],
                '--resume')
    assert 'resumed epoch: 1' in out
    full = train_losses(uninterrupted['work'])
    resumed = train_losses(work)
    epoch2 = sorted(k for k in full if k[0] == 2)
    assert len(epoch2) == 5 and sorted(resumed) == epoch2
    # Random flips draw from the global generators in the main process
    # (num_workers=0); RandomStateHook restores them, so the losses are
    # bit-identical (without it they differ by ~1e-2).
    assert [resumed[k] for k in epoch2] == [full[k] for k in epoch2]


@pytest.mark.slow
def test_resume_without_checkpoint_keeps_load_from(uninterrupted):
    work = str(uninterrupted['root'] / 'fresh')
    start = osp.join(uninterrupted['work'], 'epoch_2.pth')
    out = train(work, uninterrupted['opts'] +
                [f'load_from={start}', 'train_cfg.max_epochs=1'], '--resume')
    assert f'Load checkpoint from {start}' in out
    assert 'resumed epoch' not in out
    # Said once, in the run's log.
    assert out.count(f'--resume: nothing to resume in {work} (no '
                     f'last_checkpoint); starting afresh from '
                     f'load_from={start}.') == 1
    # Starting from the trained weights, not from scratch.
    first = train_losses(work)[(1, 1)]
    scratch = train_losses(uninterrupted['work'])[(1, 1)]
    assert first < scratch
