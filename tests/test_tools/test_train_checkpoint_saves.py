"""tools/train.py: checkpoints survive a killed save and a full disk, and a
used work dir is refused. Tiny CE baseline (5 iterations an epoch, no
validation), keeping one checkpoint (``max_keep_ckpts=1``): MMEngine's own
hook deletes ``epoch_1.pth`` before it writes ``epoch_2.pth``."""
import glob
import os
import os.path as osp
import shutil
import signal
import subprocess
import sys

import pytest
import torch

import vlltr_mm  # noqa: F401  (checkpoint safe globals)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')

# tools/train.py under an audit hook that SIGKILLs the process when it
# renames the finished temporary file into epoch_2.pth: the moment at
# which an in-place write would have left a partial checkpoint.
KILL_AT_SAVE = '''
import os, runpy, signal, sys
def kill_at_save(event, args):
    if event == 'os.rename' and str(args[1]).endswith('epoch_2.pth'):
        os.kill(os.getpid(), signal.SIGKILL)
sys.addaudithook(kill_at_save)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''

# tools/train.py with the work dir on a small tmpfs of its own (a user and
# mount namespace: no root needed); the work dir is copied out afterwards.
ON_SMALL_DISK = '''
mount -t tmpfs -o size="$1" tmpfs "$2" || exit 90
shift 2
"$@"; rc=$?
cp -a "$MNT_WORK" "$COPY_TO"
exit $rc
'''


def run(args, env=None):
    env = dict(os.environ, OMP_NUM_THREADS='1', **(env or {}))
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


def train_args(work, opts, *extra):
    return ['tools/train.py', BASELINE, '--work-dir', work, *extra,
            '--cfg-options', *opts]


def files(work):
    """Checkpoint-like and temporary file names in ``work``."""
    names = {osp.basename(p) for p in glob.glob(f'{work}/*.pth')}
    names |= {osp.basename(p) for p in glob.glob(f'{work}/.*.tmp')}
    return sorted(names)


def epoch_of(path):
    return torch.load(path, map_location='cpu')['meta']['epoch']


@pytest.fixture(scope='module')
def killed(tmp_path_factory, tiny_baseline_data):
    """A 2-epoch run SIGKILLed while it saves epoch_2.pth."""
    root = tmp_path_factory.mktemp('ckpt_saves')
    opts = tiny_baseline_data(str(root / 'data'), test_per_class=1) + [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=10',
        'default_hooks.checkpoint.max_keep_ckpts=1'
    ]
    work = str(root / 'work')
    code, out = run([sys.executable, '-c', KILL_AT_SAVE,
                     *train_args(work, opts)])
    return dict(root=root, opts=opts, work=work, code=code, out=out)


def test_kill_during_save_keeps_previous_checkpoint(killed):
    work = killed['work']
    assert killed['code'] == -signal.SIGKILL, killed['out'][-3000:]
    names = files(work)
    # Killed mid-save: the new checkpoint exists only as a hidden
    # temporary file, and the one it replaces is still there, whole.
    assert [n for n in names if n.endswith('.pth')] == ['epoch_1.pth']
    assert len(names) == 2 and names[0].startswith('.epoch_2.pth.')
    assert epoch_of(osp.join(work, 'epoch_1.pth')) == 1
    with open(osp.join(work, 'last_checkpoint')) as f:
        assert f.read() == osp.join(work, 'epoch_1.pth')


@pytest.mark.slow
def test_used_work_dir_refused_then_resume_and_overwrite(killed, load_tool):
    work, opts = killed['work'], killed['opts']
    train = load_tool('tools/train.py')
    before = {n: os.stat(osp.join(work, n)).st_mtime_ns for n in files(work)}
    with pytest.raises(SystemExit, match=(
            f'{work} holds checkpoints of an earlier run \\(epoch_1.pth, '
            'last_checkpoint\\); this run would overwrite them. Continue '
            'that run with --resume, write this one to another --work-dir, '
            'or add --overwrite')):
        train.main(train_args(work, opts)[1:])
    after = {n: os.stat(osp.join(work, n)).st_mtime_ns for n in files(work)}
    assert after == before
    with pytest.raises(SystemExit, match='give one of them'):
        train.main(train_args(work, opts, '--resume', '--overwrite')[1:])

    # --resume continues the killed run from epoch_1.pth and clears the
    # temporary file of the killed save.
    code, out = run([sys.executable, *train_args(work, opts, '--resume')])
    assert code == 0, out[-3000:]
    assert 'resumed epoch: 1' in out
    assert ('Removed 1 temporary file(s) of an interrupted checkpoint '
            f'save in {work}: .epoch_2.pth.') in out
    # (the last epoch is validated: a best checkpoint as well)
    assert files(work) == ['best_accuracy_top1_epoch_2.pth', 'epoch_2.pth']
    assert epoch_of(osp.join(work, 'epoch_2.pth')) == 2

    # --overwrite deletes the earlier run's checkpoints and starts afresh.
    code, out = run([sys.executable, *train_args(
        work, opts + ['train_cfg.max_epochs=1'], '--overwrite')])
    assert code == 0, out[-3000:]
    assert ("--overwrite: deleted the earlier run's checkpoints in "
            f'{work}: best_accuracy_top1_epoch_2.pth, epoch_2.pth, '
            'last_checkpoint') in out
    assert 'resumed' not in out
    assert files(work) == ['best_accuracy_top1_epoch_1.pth', 'epoch_1.pth']
    assert epoch_of(osp.join(work, 'epoch_1.pth')) == 1


@pytest.mark.slow
def test_full_disk_keeps_previous_checkpoint(killed, tmp_path):
    if shutil.which('unshare') is None:
        pytest.skip('needs unshare (util-linux) for a private tmpfs')
    # Room for epoch_1.pth and half of epoch_2.pth.
    size = osp.getsize(osp.join(killed['work'], 'epoch_1.pth')) * 3 // 2
    mnt, copy = tmp_path / 'mnt', tmp_path / 'copy'
    mnt.mkdir()
    work = str(mnt / 'work')
    code, out = run(
        ['unshare', '-rm', 'sh', '-c', ON_SMALL_DISK, 'sh', str(size),
         str(mnt), sys.executable, *train_args(work, killed['opts'])],
        env=dict(MNT_WORK=work, COPY_TO=str(copy)))
    if code == 90 or (code and 'unshare' in out and not copy.exists()):
        pytest.skip(f'cannot mount a private tmpfs here: {out[-300:]}')
    assert code != 0
    assert (f'OSError: [Errno 28] Could not save checkpoint {work}/'
            'epoch_2.pth (') in out, out[-3000:]
    assert 'No space left on device; ' in out and f'MiB free in {work}' in out
    # Nothing partial under a checkpoint name, no temporary file left,
    # and epoch_1.pth (which MMEngine would have deleted first) intact.
    assert files(copy) == ['epoch_1.pth']
    assert epoch_of(copy / 'epoch_1.pth') == 1
    with open(copy / 'last_checkpoint') as f:
        assert f.read() == osp.join(work, 'epoch_1.pth')
