"""tools/dist_train.sh and tools/dist_test.sh end every rank within seconds
when one rank fails, and a used work dir is refused with one message (2
gloo processes, tiny CE baseline).

Which rank meets a bad image is fixed by the sampler: MMEngine's
``DefaultSampler(shuffle=False)`` gives rank ``r`` the indices ``r, r + 2,
...``, so an undecodable image at an odd list index (even line number) is
loaded by rank 1 only, which the tests check from the messages.
"""
import os
import os.path as osp
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import vlltr_mm  # noqa: F401  (registers the baseline's components)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')
PROMPT_S = 60  # the whole run, start-up included; a hang took 300+ s


def env():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        port = s.getsockname()[1]
    return dict(os.environ, PYTHON=sys.executable, PORT=str(port),
                OMP_NUM_THREADS='1')


def break_image(data, split, line):
    """Make the image on ``line`` (1-based) of a split's list unreadable;
    returns the line's list file."""
    ann = osp.join(data, f'ImageNet_LT_{split}.txt')
    with open(ann) as f:
        rel = f.read().splitlines()[line - 1].split()[0]
    with open(osp.join(data, rel), 'wb') as f:
        f.write(b'not an image')
    return ann


def run_timed(args):
    start = time.monotonic()
    proc = subprocess.run(args, cwd=ROOT, env=env(), capture_output=True,
                          text=True, timeout=3 * PROMPT_S)
    return proc.returncode, proc.stdout + proc.stderr, \
        time.monotonic() - start


def assert_rank1_failed_once(code, out, seconds, where):
    assert code != 0, out[-4000:]
    assert seconds < PROMPT_S, out[-4000:]
    # The cause is printed once, by rank 1, with rank and host.
    assert out.count(where) == 1, out[-4000:]
    head = re.search(r'\[rank (\d)/2 on \S+, pid \d+\] (training|testing) '
                     r'failed:\n', out)
    assert head and head.group(1) == '1', out[-4000:]


@pytest.fixture(scope='module')
def tiny(tmp_path_factory, tiny_baseline_data):
    root = tmp_path_factory.mktemp('fail_fast')
    data = str(root / 'data')
    opts = tiny_baseline_data(data, test_per_class=2) + [
        'train_dataloader.sampler.type=DefaultSampler',
        'train_dataloader.sampler.shuffle=False',
        'train_cfg.val_interval=100', 'default_hooks.logger.interval=1'
    ]
    return dict(root=root, data=data, opts=opts)


@pytest.mark.slow
def test_bad_image_on_one_rank_ends_training(tiny, tmp_path):
    # Line 18 = index 17: rank 1's 9th image, in its second batch of 8.
    ann = break_image(tiny['data'], 'train', 18)
    code, out, seconds = run_timed([
        'bash', 'tools/dist_train.sh', BASELINE, '2', '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts'],
        'train_cfg.max_epochs=1'
    ])
    assert_rank1_failed_once(code, out, seconds,
                             f'{ann}:18: cannot load image')
    assert 'SampleLoadError' in out


@pytest.mark.slow
def test_killed_rank_ends_the_others(tiny, tmp_path):
    if not osp.isdir('/proc'):
        pytest.skip('finds the rank-1 process through /proc')
    proc = subprocess.Popen([
        'bash', 'tools/dist_train.sh', BASELINE, '2', '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts'],
        'train_dataloader.batch_size=2', 'train_cfg.max_epochs=50'
    ], cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)
    lines, training = [], threading.Event()

    def read():
        for line in proc.stdout:
            lines.append(line)
            if re.search(r'Epoch\(train\) +\[1\]\[ *1/', line):
                training.set()

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        assert training.wait(PROMPT_S), ''.join(lines)[-4000:]
        # torchrun's workers are its children; rank 1 has LOCAL_RANK=1.
        rank1 = next(pid for pid in worker_pids(proc.pid)
                     if b'LOCAL_RANK=1\0' in environ(pid))
        os.kill(rank1, signal.SIGKILL)
        killed_at = time.monotonic()
        code = proc.wait(PROMPT_S)
        seconds = time.monotonic() - killed_at
    finally:
        if proc.poll() is None:  # torchrun stops its workers on SIGTERM
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
        reader.join(10)
    out = ''.join(lines)
    assert code != 0 and seconds < 15, (seconds, out[-4000:])
    # torchrun's summary names the killed rank.
    assert 'Signal 9 (SIGKILL) received by PID' in out


def worker_pids(parent):
    pids = []
    for name in os.listdir('/proc'):
        if name.isdigit():
            try:
                with open(f'/proc/{name}/stat') as f:
                    # "pid (comm) state ppid ...": comm may hold spaces.
                    ppid = int(f.read().rsplit(')', 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == parent:
                pids.append(int(name))
    return pids


def environ(pid):
    with open(f'/proc/{pid}/environ', 'rb') as f:
        return f.read()


@pytest.mark.slow
def test_bad_image_on_one_rank_ends_testing(tiny, tmp_path):
    # Line 2 = index 1: rank 1's first image.
    ann = break_image(tiny['data'], 'test', 2)
    torch.manual_seed(0)
    ckpt = str(tmp_path / 'init.pth')
    model = MODELS.build(Config.fromfile(BASELINE).model)
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    code, out, seconds = run_timed([
        'bash', 'tools/dist_test.sh', BASELINE, ckpt, '2', '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts'],
        'test_dataloader.batch_size=2'
    ])
    assert_rank1_failed_once(code, out, seconds,
                             f'{ann}:2: cannot load image')


@pytest.mark.slow
def test_used_work_dir_refused_once(tiny, tmp_path):
    # Every rank checks the work dir before the group forms; rank 0 says
    # why and the others leave after it.
    (tmp_path / 'epoch_1.pth').write_bytes(b'an earlier run')
    code, out, seconds = run_timed([
        'bash', 'tools/dist_train.sh', BASELINE, '2', '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts']
    ])
    assert code != 0 and seconds < PROMPT_S, out[-4000:]
    assert out.count(f'{tmp_path} holds checkpoints of an earlier run '
                     '(epoch_1.pth)') == 1, out[-4000:]
    assert (tmp_path / 'epoch_1.pth').read_bytes() == b'an earlier run'
