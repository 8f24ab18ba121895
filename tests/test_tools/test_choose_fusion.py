"""tools/analysis/choose_fusion.py on a demo-like tiny LGR checkpoint.

The demo's LGR configs (``configs/vlltr/demo/``) with a tiny random
open_clip tower and a generated 6-class dataset: the tool, run as a real
process and on 2 gloo processes, chooses what the grid search chooses on a
``tools/test.py --out`` val dump, the demo runner's former path.
"""
import argparse
import json
import os
import os.path as osp
import socket
import subprocess
import sys

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from mmpretrain.registry import MODELS
from PIL import Image

import vlltr_mm  # noqa: F401  (registers the model)
from vlltr_mm.evaluation import fusion_selection as fs

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools', 'demo'))
from demo_stages import dataset_options  # noqa: E402

TOOL = 'tools/analysis/choose_fusion.py'
LGR = 'configs/vlltr/demo/lgr_demo_fmnist-lt.py'
LGR_LA = 'configs/vlltr/demo/lgr-la_demo_fmnist-lt.py'


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def run(args):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


def parse_options(opts):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *opts]).cfg_options


@torch.no_grad()
def informative_head(model, root, train_list, labels):
    """A random tiny tower gives nearly equal features for every image:
    standardise them in its output projection, then let the image branch
    score the class means plus twice the log prior, and make the anchors
    noisy class means (so alpha and tau both matter)."""
    paths = [line.split()[0] for line in
             open(train_list).read().splitlines()]
    images = np.stack([
        np.asarray(Image.open(root / p).convert('RGB').resize((32, 32)))
        for p in paths
    ])
    x = (torch.from_numpy(images).permute(0, 3, 1, 2).float() - 127) / 128
    model.eval()
    feats = model.backbone(x)[0]  # [N, 16]
    mu, sigma = feats.mean(0), feats.std(0) + 1e-6
    proj = model.backbone.visual.attnpool.c_proj
    proj.weight.div_(sigma[:, None])
    proj.bias.sub_(mu).div_(sigma)
    z = model.backbone(x)[0]
    labels = torch.tensor(labels)
    means = torch.stack([z[labels == c].mean(0) for c in range(6)])
    head = model.head
    eye = torch.eye(16)
    head.mlp[0].weight.zero_()
    head.mlp[0].bias.zero_()
    head.mlp[0].weight[:16] = eye
    head.mlp[0].weight[16:32] = -eye
    head.mlp[2].weight.zero_()
    head.mlp[2].weight[:, :16] = means
    head.mlp[2].weight[:, 16:32] = -means
    head.mlp[2].bias.copy_(2 * head.class_prior.log_prior())
    head.set_anchors(means[:, None] + 0.5 * torch.randn(
        6, head.num_anchors, 16), logit_scale=10.0)


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    """Tiny data, the demo configs' options for it, and an LGR checkpoint
    whose image branch carries the prior (so tau matters)."""
    tmp = tmp_path_factory.mktemp('choose_fusion')
    data = tmp / 'data'
    run([sys.executable, 'tools/data/make_tiny_lt.py', str(data),
         '--counts', '30', '15', '8', '4', '2', '1', '--val-per-class', '4',
         '--test-per-class', '2'])
    lists = {s: str(data / f'ImageNet_LT_{s}.txt')
             for s in ('train', 'val', 'test')}
    classes = (data / 'labels.txt').read_text().split()
    opts = dataset_options(osp.join(ROOT, LGR), dict(
        data_root=str(data), ann_files=lists, classes=classes,
        text_labels_file=str(data / 'labels.txt'),
        wiki_dir=str(data / 'wiki'), checkpoint='unused.pth'))
    opts += ['model.backbone.model_name=vlltr-tiny-rn',
             'model.head.in_channels=16']
    for key in ('val', 'test'):
        opts += [f'{key}_dataloader.num_workers=0',
                 f'{key}_dataloader.dataset.pipeline.1.scale=(32,32)']

    cfg = Config.fromfile(osp.join(ROOT, LGR))
    cfg.merge_from_dict(parse_options(opts))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    labels = [int(line.split()[1]) for line in
              open(lists['train']).read().splitlines()]
    counts = np.bincount(labels, minlength=6).tolist()
    head = model.head
    head.set_class_counts(counts)
    informative_head(model, data, lists['train'], labels)
    ckpt = str(tmp / 'lgr.pth')
    torch.save(dict(state_dict=model.state_dict(), meta=dict()), ckpt)
    return dict(tmp=tmp, lists=lists, opts=opts, ckpt=ckpt, counts=counts)


@pytest.fixture(scope='module')
def expected(tiny):
    """The grid search on a tools/test.py dump of the val split, with the
    plain LGR config (tau 0, alpha 0.2)."""
    out = str(tiny['tmp'] / 'test_py' / 'val.pkl')
    run([sys.executable, 'tools/test.py', LGR, tiny['ckpt'], '--work-dir',
         str(tiny['tmp'] / 'test_py'), '--out', out, '--out-item', 'pred',
         '--cfg-options', *tiny['opts'],
         f"test_dataloader.dataset.ann_file={tiny['lists']['val']}"])
    pred = fs.load_predictions(out)
    assert len(pred['gt']) == 24
    return fs.select(pred, tiny['counts'], 'alpha+tau', default_alpha=0.2)


def check(result, expected, tiny):
    assert (result['alpha'], result['tau']) == (expected['alpha'],
                                                expected['tau'])
    assert result['grid'] == expected['grid']
    # A grid where nothing varies would test nothing.
    assert len({p['val_acc'] for p in result['grid']}) > 3
    assert result['select'] == 'alpha+tau' and result['split'] == 'val'
    assert result['class_counts'] == tiny['counts']
    assert result['default_alpha'] == 0.2 and result['target'] == 'image'
    assert result['cfg_options'] == [
        f"model.head.alpha={expected['alpha']}",
        f"model.head.posthoc_tau={expected['tau']}"]


def test_tool_matches_grid_search_on_test_dump(tiny, expected):
    # The LA config's tau = 1 is switched off for the dump.
    work = tiny['tmp'] / 'one'
    out = run([sys.executable, TOOL, LGR_LA, tiny['ckpt'], '--work-dir',
               str(work), '--cfg-options', *tiny['opts']])
    result = json.loads((work / 'fusion_choice.json').read_text())
    check(result, expected, tiny)
    assert len(fs.load_predictions(result['predictions'])['gt']) == 24
    line = 'test with: --cfg-options ' + ' '.join(result['cfg_options'])
    assert line in out
    logs = [osp.join(d, f) for d, _, fs_ in os.walk(work) for f in fs_
            if f.endswith('.log')]
    assert len(logs) == 1 and line in open(logs[0]).read()

    # --predictions re-searches the same dump without the model.
    out = run([sys.executable, TOOL, LGR_LA, tiny['ckpt'], '--predictions',
               result['predictions'], '--select', 'alpha', '--alpha-grid',
               '0.2', '0.5', '--out', str(work / 'alpha.json'),
               '--cfg-options', *tiny['opts']])
    alpha = json.loads((work / 'alpha.json').read_text())
    assert {p['tau'] for p in alpha['grid']} == {0.0}
    assert [p['alpha'] for p in alpha['grid']] == [0.2, 0.5]
    best = max(alpha['grid'], key=lambda p: (p['val_acc'], -p['alpha']))
    assert alpha['alpha'] == best['alpha']
    assert 'test with: --cfg-options model.head.alpha=' in out


def test_tool_on_two_gloo_processes(tiny, expected):
    work = tiny['tmp'] / 'two'
    run([sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node',
         '2', '--master_port', str(_free_port()), TOOL, LGR, tiny['ckpt'],
         '--launcher', 'pytorch', '--work-dir', str(work), '--cfg-options',
         *tiny['opts']])
    result = json.loads((work / 'fusion_choice.json').read_text())
    check(result, expected, tiny)
    # Rank 0's dump holds every val sample once.
    pred = fs.load_predictions(result['predictions'])
    assert sorted(pred['gt'].tolist()) == sorted(
        int(line.split()[1])
        for line in open(tiny['lists']['val']).read().splitlines())


def test_refusals(tiny, load_tool, capsys):
    tool = load_tool(TOOL)
    fc = 'configs/vlltr/demo/fc_demo_fmnist-lt.py'
    with pytest.raises(SystemExit, match="'LinearClsHead', which has no "
                       'posthoc_tau'):
        tool.main([osp.join(ROOT, fc), tiny['ckpt']])
    base = osp.join(ROOT, 'configs/vlltr/demo/baseline_demo_fmnist-lt.py')
    with pytest.raises(SystemExit, match='has no alpha'):
        tool.main([base, tiny['ckpt'], '--select', 'alpha+tau'])
    with pytest.raises(ValueError, match=r'alpha grid .* \[0, 1\]'):
        tool.main([base, tiny['ckpt'], '--alpha-grid', '2'])
    # A checkpoint without a class prior, and no counts in the config.
    state = torch.load(tiny['ckpt'], weights_only=True)
    state['state_dict'].pop('head.class_prior.counts')
    bare = str(tiny['tmp'] / 'bare.pth')
    torch.save(state, bare)
    with pytest.raises(SystemExit, match='no head.class_prior.counts'):
        tool.class_counts(bare, Config(dict(model=dict(head=dict()))))
    assert tool.class_counts(bare, Config(dict(model=dict(
        head=dict(class_counts=[3, 1]))))) == [3, 1]
    assert tool.class_counts(tiny['ckpt'], Config(dict(model=dict(
        head=dict())))) == tiny['counts']
