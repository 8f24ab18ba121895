"""tools/train.py, tools/test.py and the dist scripts, run for real on CPU."""
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import pytest
import torch

import vlltr_mm  # noqa: F401  (checkpoint safe globals)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')
MIXED = osp.join(ROOT, 'configs/examples/resnet18_tiny-lt_from-mmpretrain.py')


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(args, **kwargs):
    env = dict(os.environ, PYTHON=sys.executable, PORT=str(_free_port()))
    proc = subprocess.run(
        args, cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=600, **kwargs)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    return out


@pytest.fixture(scope='module')
def tiny_lt(tmp_path_factory):
    root = tmp_path_factory.mktemp('tiny_lt')
    run([sys.executable, 'tools/data/make_tiny_lt.py', str(root)])
    return str(root)


def data_options(root):
    return [
        f'{k}.dataset.data_root={root}'
        for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')
    ] + [
        f'{k}.train_ann_file={root}/ImageNet_LT_train.txt'
        for k in ('val_evaluator', 'test_evaluator')
    ]


@pytest.mark.slow
def test_train_then_test(tiny_lt, tmp_path):
    work = str(tmp_path / 'work')
    opts = data_options(tiny_lt) + [
        'train_cfg.max_epochs=2', 'train_cfg.val_interval=2',
        'train_dataloader.num_workers=0', 'val_dataloader.num_workers=0',
        'test_dataloader.num_workers=0'
    ]
    out = run([
        sys.executable, 'tools/train.py', BASELINE, '--work-dir', work,
        '--cfg-options', *opts
    ])
    assert 'accuracy/many' in out
    ckpt = osp.join(work, 'epoch_2.pth')
    # Loadable with torch's default weights_only=True.
    assert torch.load(ckpt, map_location='cpu')['meta']['epoch'] == 2

    metrics_file = str(tmp_path / 'metrics.json')
    out = run([
        sys.executable, 'tools/test.py', BASELINE, ckpt, '--work-dir', work,
        '--out', metrics_file, '--out-item', 'metrics', '--cfg-options',
        *opts
    ])
    metrics = json.load(open(metrics_file))
    for key in ('top1', 'many', 'medium', 'few'):
        assert 0 <= metrics[f'accuracy/{key}'] <= 100
        assert f'accuracy/{key}' in out

    preds_file = str(tmp_path / 'preds.pkl')
    run([
        sys.executable, 'tools/test.py', BASELINE, ckpt, '--work-dir', work,
        '--out', preds_file, '--cfg-options', *opts
    ])
    assert osp.getsize(preds_file) > 0

    # --resume is covered by test_resume.py (exact continuation).


# dist_train.sh / dist_test.sh on gloo: test_vlltr_pipeline.py.


@pytest.mark.slow
def test_example_config_runs_with_stock_mmpretrain_tool(tiny_lt, tmp_path):
    import mmpretrain
    stock = osp.join(osp.dirname(mmpretrain.__file__), '.mim/tools/train.py')
    out = run([
        sys.executable, stock, MIXED, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *data_options(tiny_lt),
        'train_cfg.max_epochs=1', 'train_cfg.val_interval=1'
    ])
    assert 'accuracy/many' in out and 'accuracy/few' in out
