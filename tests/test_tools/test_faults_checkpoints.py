"""Faults that used to give wrong numbers with exit 0, through the tools.

Each case ends in a non-zero exit (or the tool's exception) whose message
names the file at fault and the keys / shapes / path, on the tiny CE
baseline. Checkpoints are written here from the config's own model.
"""
import importlib.util
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS

import vlltr_mm  # noqa: F401  (registers everything)

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BASELINE = osp.join(ROOT, 'configs/examples/baseline_ce_tiny-lt.py')

pytestmark = pytest.mark.usefixtures('one_thread')


def tool(name):
    spec = importlib.util.spec_from_file_location(
        f'vlltr_tool_{name}', osp.join(ROOT, 'tools', f'{name}.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    return proc.returncode, proc.stdout + proc.stderr


@pytest.fixture(scope='module')
def tiny(tmp_path_factory, tiny_baseline_data):
    """Tiny data, its --cfg-options and a valid checkpoint's state dict."""
    root = tmp_path_factory.mktemp('faults')
    opts = tiny_baseline_data(str(root / 'data'), test_per_class=2)
    torch.manual_seed(0)
    state = MODELS.build(Config.fromfile(BASELINE).model).state_dict()
    return dict(root=root, opts=opts, state=state)


def save(tiny, name, state):
    path = str(tiny['root'] / name)
    torch.save({'state_dict': state, 'meta': {}}, path)
    return path


def run_test_tool(tiny, path, tmp_path):
    """tools/test.py in-process (its main(argv)): the exception raised."""
    return tool('test').main([
        BASELINE, path, '--work-dir',
        str(tmp_path / 'work'), '--cfg-options', *tiny['opts']
    ])


@pytest.mark.slow
def test_test_refuses_checkpoint_that_does_not_fit(tiny, tmp_path):
    state = dict(tiny['state'])
    del state['head.fc.bias']
    state['head.extra.weight'] = torch.zeros(2)
    state['head.fc.weight'] = torch.zeros(3, 128)
    ckpt = save(tiny, 'misfit.pth', state)
    code, out = run([
        'tools/test.py', BASELINE, ckpt, '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts']
    ])
    assert code != 0
    assert f'Checkpoint {ckpt} (loaded for testing) does not fit' in out
    assert 'missing keys (1): head.fc.bias' in out
    assert 'unexpected keys (1): head.extra.weight' in out
    assert ('head.fc.weight: checkpoint (3, 128) vs model (6, 128)'
            in out)
    assert 'accuracy/top1' not in out  # nothing was evaluated


@pytest.mark.slow
def test_test_refuses_empty_checkpoint(tiny, tmp_path):
    empty = str(tmp_path / 'empty.pth')
    open(empty, 'wb').close()
    code, out = run([
        'tools/test.py', BASELINE, empty, '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts']
    ])
    assert code != 0
    assert f'Checkpoint {empty} is empty (0 bytes)' in out


def test_test_refuses_truncated_checkpoint(tiny, tmp_path):
    whole = save(tiny, 'whole.pth', tiny['state'])
    cut = str(tmp_path / 'cut.pth')
    with open(whole, 'rb') as f, open(cut, 'wb') as g:
        g.write(f.read()[:osp.getsize(whole) // 2])
    with pytest.raises(RuntimeError,
                       match=f'Checkpoint {cut} is truncated or corrupt'):
        run_test_tool(tiny, cut, tmp_path)


def test_test_refuses_nonfinite_checkpoint(tiny, tmp_path):
    state = dict(tiny['state'])
    state['head.fc.weight'] = torch.full_like(state['head.fc.weight'],
                                              float('nan'))
    ckpt = save(tiny, 'nan.pth', state)
    with pytest.raises(RuntimeError,
                       match=rf'Checkpoint {ckpt} holds NaN/Inf weights in '
                       r'1 tensors \(head.fc.weight\)'):
        run_test_tool(tiny, ckpt, tmp_path)


@pytest.mark.slow
def test_test_out_unwritable_fails_before_evaluation(tiny, tmp_path):
    ckpt = save(tiny, 'good.pth', tiny['state'])
    blocker = tmp_path / 'file'
    blocker.write_text('')
    out_path = str(blocker / 'metrics.json')  # under a file: unwritable
    code, out = run([
        'tools/test.py', BASELINE, ckpt, '--out', out_path, '--out-item',
        'metrics', '--work-dir',
        str(tmp_path), '--cfg-options', *tiny['opts']
    ])
    assert code != 0
    assert f'--out {out_path} cannot be written' in out
    assert 'Nothing was evaluated' in out and 'Epoch(test)' not in out


@pytest.mark.slow
def test_train_stops_at_nonfinite_loss(tiny, tmp_path):
    work = str(tmp_path / 'work')
    code, out = run([
        'tools/train.py', BASELINE, '--work-dir', work, '--cfg-options',
        *tiny['opts'], 'optim_wrapper.optimizer.lr=1e6',
        'train_cfg.max_epochs=2'
    ])
    assert code != 0
    assert 'Non-finite loss at epoch 1, iteration' in out
    assert 'optim_wrapper.optimizer.lr' in out and 'lr=1e+06' in out
    assert not [f for f in os.listdir(work) if f.endswith('.pth')]


def test_resume_with_broken_last_checkpoint(tiny, tmp_path):
    work = tmp_path / 'work'
    work.mkdir()
    (work / 'last_checkpoint').write_text(str(work / 'epoch_3.pth'))
    train = tool('train')
    with pytest.raises(SystemExit, match='names .*epoch_3.pth, which does '
                       'not exist'):
        train.main([BASELINE, '--work-dir', str(work), '--resume'])
    (work / 'last_checkpoint').write_text('')
    with pytest.raises(SystemExit, match='last_checkpoint is empty'):
        train.main([BASELINE, '--work-dir', str(work), '--resume'])
