"""Broken checkpoints through MMPretrain's APIs name the file, as
tools/test.py does; checkpoints re-saved by plain scripts load, or are
refused with a command that works.

The model is the FC stage of the shipped LGR config with the tiny random
open_clip ResNet (embedding 16); files are real, written here or by a
subprocess that never imports vlltr_mm.
"""
import os.path as osp
import pickle
import subprocess
import sys
import textwrap
import zipfile

import pytest
import torch
from _model_index import registered_model
from mmengine.config import Config
from mmpretrain import get_model, inference_model
from mmpretrain.apis import ImageClassificationInferencer
from mmpretrain.registry import MODELS

import vlltr_mm  # noqa: F401  (installs the checkpoint loader)
from vlltr_mm.utils.checkpoint import check_checkpoint_file

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
LGR_CONFIG = osp.join(REPO, 'configs', 'vlltr', 'lgr_r50_imagenet-lt.py')
CLASSES = ['cat', 'dog', 'bird']

pytestmark = pytest.mark.usefixtures('one_thread')


def get(cfg, path):
    return get_model(cfg, pretrained=path, device='cpu')


def inferencer(cfg, path):
    return ImageClassificationInferencer(cfg, pretrained=path, device='cpu')


@pytest.fixture(scope='module')
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp('ckpt_files')
    cfg = root / 'fc.py'
    cfg.write_text(f'''
_base_ = [{LGR_CONFIG!r}]
model = dict(
    backbone=dict(model_name='vlltr-tiny-rn'),
    head=dict(_delete_=True, type='LinearClsHead',
              num_classes={len(CLASSES)}, in_channels=16),
    train_cfg=None)
data_preprocessor = dict(num_classes={len(CLASSES)})
''')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(cfg)).model)
    state = model.state_dict()
    good = root / 'good.pth'
    torch.save({'state_dict': state,
                'meta': {'dataset_meta': {'classes': CLASSES}}}, good)
    raw = good.read_bytes()
    (root / 'zero.pth').write_bytes(b'')
    (root / 'cut.pth').write_bytes(raw[:len(raw) // 2])
    return dict(root=root, cfg=str(cfg), good=str(good), state=state)


@pytest.mark.parametrize('load', [get, inferencer])
@pytest.mark.parametrize('name', ['zero.pth', 'cut.pth', 'gone.pth'])
def test_broken_file_named_as_by_tools_test(files, load, name):
    """The message is check_checkpoint_file's, which tools/test.py's
    CheckpointCheckHook gives for the same file."""
    path = str(files['root'] / name)
    with pytest.raises((RuntimeError, FileNotFoundError)) as expected:
        check_checkpoint_file(path)
    assert path in str(expected.value)
    with pytest.raises(expected.type) as got:
        load(files['cfg'], path)
    assert str(got.value) == str(expected.value)


def test_unreadable_file_named(files):
    """Files the cheap checks pass that torch cannot read: a web page
    saved as .pth, a truncated legacy (non-zip) checkpoint."""
    page = files['root'] / 'page.pth'
    page.write_bytes(b'<html>Not Found</html>\n')
    legacy = files['root'] / 'legacy.pth'
    torch.save({'state_dict': files['state']}, legacy,
               _use_new_zipfile_serialization=False)
    legacy.write_bytes(legacy.read_bytes()[:1000])
    for path, why in ((page, 'UnpicklingError: Unsupported operand 60'),
                      (legacy, r'\w*[Ee]rror')):
        for load in (get, inferencer):
            with pytest.raises(RuntimeError, match=(
                    rf'^Checkpoint {path} is truncated, corrupt or not a '
                    rf'checkpoint \({why}')):
                load(files['cfg'], str(path))


def test_inference_model_names_the_file(files, tmp_path):
    zero = str(files['root'] / 'zero.pth')
    with registered_model(tmp_path, zero, files['cfg']) as name, \
            pytest.raises(RuntimeError, match=r'Checkpoint \S+/zero\.pth '
                          r'is empty \(0 bytes\)'):
        inference_model(name, torch.zeros(8, 8, 3).numpy(), device='cpu')


def test_refused_object_gives_a_working_command(files):
    """A Namespace (not allow-listed) is refused; the printed command
    keeps the weights and class names, and its output loads."""
    import argparse
    path = str(files['root'] / 'namespace.pth')
    torch.save({'state_dict': files['state'],
                'meta': {'dataset_meta': {'classes': CLASSES},
                         'args': argparse.Namespace(lr=0.1)}}, path)
    for load in (get, inferencer):
        with pytest.raises(pickle.UnpicklingError) as info:
            load(files['cfg'], path)
        msg = str(info.value)
        assert msg.startswith(f'Checkpoint {path} holds a Python object '
                              '(argparse.Namespace) beside its weights')
    command = next(line.strip() for line in msg.splitlines()
                   if line.strip().startswith('python -c '))
    assert f'and load {path[:-4]}_weights.pth instead' in msg
    subprocess.run(command.replace('python', sys.executable, 1), shell=True,
                   check=True, cwd=str(files['root']))
    model = inferencer(files['cfg'], path[:-4] + '_weights.pth')
    assert model.classes == CLASSES
    for key, value in files['state'].items():
        assert torch.equal(model.model.state_dict()[key], value), key


def test_plain_script_resave_loads(files):
    """A user script without vlltr_mm adds numpy arrays, a ConfigDict and
    MMEngine's message hub (HistoryBuffers) and saves with torch.save."""
    path = str(files['root'] / 'resaved.pth')
    script = textwrap.dedent(f'''
        import sys
        import numpy as np
        import torch
        from mmengine.config import ConfigDict
        from mmengine.logging import MessageHub
        ckpt = torch.load({files['good']!r})
        hub = MessageHub.get_instance('plain')
        hub.update_scalar('train/loss', 0.5)
        hub.update_scalar('train/loss', 0.25)
        ckpt['message_hub'] = hub.state_dict()
        ckpt['meta']['cfg'] = ConfigDict(model=dict(
            type='ImageClassifier', head=dict(num_classes={len(CLASSES)})))
        ckpt['meta']['counts'] = np.array([5, 3, 1])
        ckpt['meta']['empty'] = np.zeros((0, 2), np.float32)
        torch.save(ckpt, {path!r})
        assert 'vlltr_mm' not in sys.modules
    ''')
    subprocess.run([sys.executable, '-c', script], check=True, cwd=REPO)
    # Plain torch refuses it; the buffers pickle getattr calls ...
    plain = subprocess.run(
        [sys.executable, '-c', f'import torch; torch.load({path!r})'],
        capture_output=True, text=True, cwd=REPO)
    assert 'Weights only load failed' in plain.stderr
    with zipfile.ZipFile(path) as z:
        pickled = z.read(next(n for n in z.namelist()
                              if n.endswith('data.pkl')))
    assert b'getattr' in pickled
    # ... MMPretrain's get_model with vlltr_mm loads it, still safely.
    model = get(files['cfg'], path)
    for key, value in files['state'].items():
        assert torch.equal(model.state_dict()[key], value), key
    loaded = torch.load(path)  # torch's own default: weights_only=True
    assert loaded['meta']['counts'].tolist() == [5, 3, 1]
    assert loaded['meta']['cfg'].model.head.num_classes == len(CLASSES)
    loss = loaded['message_hub']['log_scalars']['train/loss']
    assert loss.mean() == pytest.approx(0.375)
