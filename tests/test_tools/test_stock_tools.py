"""MMPretrain's own tools on the shipped VL-LTR configs (issues 12, 19).

Stock ``browse_dataset`` and ``get_flops`` (from MMPretrain's package,
``mmpretrain/.mim/tools``) run as a user runs them, in subprocesses, on
configs that inherit the real CVLP and LGR ImageNet-LT configs and swap
in the tiny random open_clip ResNet, a 2-class list dataset and its class
text, all under ``tmp_path`` (``get_flops`` takes no ``--cfg-options``).
``vis_cam`` and ``verify_dataset`` fail on these configs as shipped by
MMPretrain; the thin wrappers in ``tools/analysis/`` make them work.
"""
import os
import os.path as osp
import shutil
import subprocess
import sys

import mmpretrain
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmpretrain.registry import MODELS
from PIL import Image

import vlltr_mm  # noqa: F401  (registers the models)

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
STOCK = osp.join(osp.dirname(mmpretrain.__file__), '.mim', 'tools')
BROWSE = osp.join(STOCK, 'visualization', 'browse_dataset.py')
FLOPS = osp.join(STOCK, 'analysis_tools', 'get_flops.py')
VIS_CAM = osp.join(STOCK, 'visualization', 'vis_cam.py')
VERIFY = osp.join(STOCK, 'misc', 'verify_dataset.py')
CLASSES = ['red', 'blue']
TINY = "dict(model_name='vlltr-tiny-rn', pretrained=None)"

COMMON = '''
data = dict(data_root={root!r}, num_classes=2)
corpus = dict(
    type='ClassTextCorpus', labels_file={root!r} + '/text/labels.txt',
    wiki_dir={root!r} + '/text/wiki', templates='openai_imagenet',
    tokenizer='RN50', context_length=77,
    cache_dir={root!r} + '/cache/class_text')
data_preprocessor = dict(num_classes=2)
'''
CONFIGS = {
    'cvlp': '''
_base_ = [{repo!r} + '/configs/vlltr/cvlp_r50_imagenet-lt.py']
''' + COMMON + f'''
model = dict(backbone={TINY}, text_encoder={TINY}, corpus=corpus,
             teacher=dict(half=False,
                          cache_dir={{root!r}} + '/cache/teacher_text'))
train_dataloader = dict(dataset=dict(corpus=corpus, dataset=data))
''',
    'lgr': '''
_base_ = [{repo!r} + '/configs/vlltr/lgr_r50_imagenet-lt.py']
''' + COMMON + f'''
model = dict(backbone={TINY},
             head=dict(num_classes=2, in_channels=16, num_anchors=3))
train_dataloader = dict(dataset=data)
custom_hooks = []
''',
}


@pytest.fixture(scope='module')
def root(tmp_path_factory):
    """2 classes x 3 PNGs in the ImageNet-LT list format + class text."""
    root = tmp_path_factory.mktemp('stock_tools')
    rng = np.random.default_rng(0)
    lines = []
    for label, name in enumerate(CLASSES):
        os.makedirs(root / 'train' / name)
        for i in range(3):
            rel = f'train/{name}/{i}.png'
            Image.fromarray(rng.integers(0, 256, (20, 24, 3), np.uint8)).save(
                root / rel)
            lines.append(f'{rel} {label}')
    (root / 'ImageNet_LT_train.txt').write_text('\n'.join(lines) + '\n')
    (root / 'labels.txt').write_text('\n'.join(CLASSES) + '\n')
    os.makedirs(root / 'text' / 'wiki')
    (root / 'text' / 'labels.txt').write_text('\n'.join(CLASSES) + '\n')
    for i, name in enumerate(CLASSES):
        (root / 'text' / 'wiki' / f'desc_{i}.txt').write_text(
            f'The colour {name} is bright. It is seen on flags.')
    return root


def run_tool(script, config, *args, cwd, ok=True):
    """Run a tool; its stdout, or with ``ok=False`` the failed process."""
    env = dict(os.environ, OMP_NUM_THREADS='1', MPLBACKEND='Agg')
    proc = subprocess.run([sys.executable, script, config, *args],
                          cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)
    if not ok:
        assert proc.returncode != 0, proc.stdout[-3000:]
        return proc
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


@pytest.mark.parametrize('stage', sorted(CONFIGS))
def test_browse_dataset_and_get_flops(stage, root, tmp_path):
    if not osp.isfile(BROWSE) or not osp.isfile(FLOPS):
        pytest.skip(f'MMPretrain ships no tools here ({STOCK})')
    config = tmp_path / f'{stage}_tiny.py'
    config.write_text(CONFIGS[stage].format(repo=REPO, root=str(root)))

    out = tmp_path / 'browse'
    run_tool(BROWSE, str(config), '--not-show', '--output-dir', str(out),
             '--show-number', '2', '--mode', 'original', cwd=tmp_path)
    # The tool ran each item through its inspecting copy of the pipeline
    # (set on the CVLP wrapper's inner dataset). Its other modes call
    # matplotlib's adjust_bbox in a form newer matplotlib no longer takes
    # (a bug of the MMPretrain 1.2 tool, whatever the config).
    assert sorted(os.listdir(out)) == ['0.png', '1.png']

    log = run_tool(FLOPS, str(config), '--shape', '32', cwd=tmp_path)
    assert 'Input shape: (3, 32, 32)' in log
    assert 'Flops:' in log and 'Params:' in log


def test_verify_dataset_on_cvlp_config(root, tmp_path):
    if not osp.isfile(VERIFY):
        pytest.skip(f'MMPretrain ships no tools here ({STOCK})')
    data = tmp_path / 'data'
    shutil.copytree(root, data)
    broken = data / 'train' / 'blue' / '1.png'
    broken.write_bytes(b'not an image')
    config = tmp_path / 'cvlp_tiny.py'
    config.write_text(CONFIGS['cvlp'].format(repo=REPO, root=str(data)))
    listing = tmp_path / 'broken.txt'
    args = (str(config), '--out-path', str(listing))

    # The training set is a ClassTextDataset around the image dataset.
    failed = run_tool(VERIFY, *args, cwd=tmp_path, ok=False)
    assert "'ConfigDict' object has no attribute 'pipeline'" in \
        failed.stderr
    out = run_tool(osp.join(REPO, 'tools', 'analysis', 'verify_dataset.py'),
                   *args, '--num-process', '2', cwd=tmp_path)
    assert '1 broken files found' in out
    assert listing.read_text().split() == [str(broken)]


def test_vis_cam_on_frozen_lgr_config(root, tmp_path):
    if not osp.isfile(VIS_CAM):
        pytest.skip(f'MMPretrain ships no tools here ({STOCK})')
    pytest.importorskip('pytorch_grad_cam',
                        reason='vis_cam needs grad-cam>=1.3.7,<1.5')
    config = tmp_path / 'lgr_tiny.py'
    config.write_text(CONFIGS['lgr'].format(repo=REPO, root=str(root)) + '''
test_dataloader = dict(dataset=dict(pipeline=[
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=32, edge='short'),
    dict(type='CenterCrop', crop_size=32),
    dict(type='PackInputs')]))
''')
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    model.head.set_anchors(torch.randn(2, 3, 16))
    ckpt = str(tmp_path / 'lgr.pth')
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, ckpt)
    # A layer with 8 x 8 positions, inside the frozen tower.
    args = (str(root / 'train' / 'red' / '0.png'), str(config), ckpt,
            '--target-layers', 'backbone.visual.layer1.0.bn3')

    failed = run_tool(VIS_CAM, *args, cwd=tmp_path, ok=False)
    assert 'AxisError: axis 2 is out of bounds' in failed.stderr
    # Reference: the stock tool on the same weights, tower not frozen.
    run_tool(VIS_CAM, *args, '--save-path', 'ref.png', '--cfg-options',
             'model.backbone.frozen=False', cwd=tmp_path)
    run_tool(osp.join(REPO, 'tools', 'analysis', 'vis_cam.py'), *args,
             '--save-path', 'cam.png', cwd=tmp_path)
    with Image.open(tmp_path / 'cam.png') as cam, \
            Image.open(tmp_path / 'ref.png') as ref:
        cam, ref = np.asarray(cam), np.asarray(ref)
    assert cam.shape == (32, 32, 3)
    assert np.array_equal(cam, ref)
