"""The docs' one-key examples (`--cfg-options data_root=... text_root=...`)
move every path of every shipped config, and really train."""
import argparse
import glob
import os.path as osp
import re
import shlex
import subprocess
import sys

import pytest
from mmengine.config import Config

from vlltr_mm.utils.tool_config import ConfigOptionsAction, load_config

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
DOCS = ('README.md', 'docs/gpu_recipe.md', 'docs/data_preparation.md')
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/vlltr/*.py')))


def root_examples():
    """Every option list of the docs that sets data_root and text_root."""
    found = []
    for doc in DOCS:
        text = open(osp.join(REPO, doc)).read().replace('\\\n', ' ')
        for m in re.finditer(r'(?:--cfg-options|D=")([^`"\n]*)', text):
            words = shlex.split(m.group(1))
            pairs = [w for w in words if re.match(r'\w+(\.\w+)*=', w)]
            if any(w.startswith('data_root=') for w in pairs):
                found.append((doc, pairs))
    return found


def parse(pairs):
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+',
                        action=ConfigOptionsAction)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options


def test_docs_show_the_one_key_form():
    docs = {doc for doc, _ in root_examples()}
    assert {'README.md', 'docs/gpu_recipe.md'} <= docs


@pytest.mark.parametrize('doc, pairs', root_examples())
def test_example_moves_every_config(doc, pairs):
    options = parse(pairs)
    data, text = options['data_root'], options.get('text_root')
    for path in CONFIGS:
        cfg = load_config(path, options)
        for split in ('train', 'val', 'test'):
            ds = cfg[f'{split}_dataloader'].dataset
            while 'dataset' in ds:
                ds = ds.dataset
            assert ds.data_root == data, (doc, path, split)
        assert cfg.test_evaluator.train_ann_file.startswith(data + '/')
        hooks = [h for h in cfg.get('custom_hooks', []) if 'corpus' in h]
        for corpus in [h.corpus for h in hooks] + (
                [cfg.model.corpus] if 'corpus' in cfg.model else []):
            if text:
                assert corpus.labels_file == f'{text}/labels.txt'


def test_one_key_trains_on_moved_data(tmp_path):
    """tools/train.py with nothing but data_root= pointing elsewhere."""
    data = tmp_path / 'elsewhere'
    subprocess.run([
        sys.executable, 'tools/data/make_tiny_lt.py', str(data),
        '--num-classes', '6', '--counts', '4', '3', '3', '2', '2', '2',
        '--val-per-class', '1', '--test-per-class', '1'
    ], cwd=REPO, check=True, capture_output=True)
    work = tmp_path / 'work'
    proc = subprocess.run([
        sys.executable, 'tools/train.py',
        'configs/examples/baseline_ce_tiny-lt.py', '--work-dir',
        str(work), '--cfg-options', f'data_root={data}',
        'train_cfg.max_epochs=1', 'train_dataloader.num_workers=0',
        'val_dataloader.num_workers=0'
    ], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert osp.isfile(work / 'epoch_1.pth')
    # The config the run dumped has every split and the prior's training
    # list under the new root.
    dumped = Config.fromfile(str(work / 'baseline_ce_tiny-lt.py'))
    for split in ('train', 'val', 'test'):
        assert dumped[f'{split}_dataloader'].dataset.data_root == str(data)
    assert dumped.test_evaluator.train_ann_file.startswith(str(data))
