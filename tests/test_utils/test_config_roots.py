"""``--cfg-options data_root=... text_root=...`` moves every path of a
config: each split, the evaluators' training list, the class text."""
import argparse
import glob
import os.path as osp

import pytest
from mmengine.config import Config, DictAction

from vlltr_mm.utils.config_roots import apply_root_options

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
GPU_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/vlltr/*.py')))
DEMO_CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs/vlltr/demo/*.py')))


def parse(*pairs):
    """``--cfg-options`` exactly as tools/train.py parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *pairs]).cfg_options


def strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from strings(item)


def loaders(cfg):
    return [cfg[f'{s}_dataloader'] for s in ('train', 'val', 'test')]


def innermost(dataset):
    while 'dataset' in dataset:  # ClassTextDataset wraps the list dataset
        dataset = dataset['dataset']
    return dataset


def test_twelve_gpu_configs():
    assert len(GPU_CONFIGS) == 12


@pytest.mark.parametrize('path', GPU_CONFIGS,
                         ids=[osp.basename(p) for p in GPU_CONFIGS])
def test_one_key_moves_every_path(path):
    cfg = Config.fromfile(path)
    old_data, old_text = cfg.data_root, cfg.text_root
    rest = apply_root_options(
        cfg, parse('data_root=/mnt/x', 'text_root=/mnt/t/', 'seed=1'))
    assert rest == {'seed': 1}
    assert (cfg.data_root, cfg.text_root) == ('/mnt/x', '/mnt/t')
    every = list(strings(cfg.to_dict()))
    assert not [s for s in every if s.startswith((old_data, old_text))]
    for loader in loaders(cfg):
        assert innermost(loader.dataset).data_root == '/mnt/x'
    for evaluator in (cfg.val_evaluator, cfg.test_evaluator):
        assert evaluator.train_ann_file.startswith('/mnt/x/')
    corpora = [h.corpus for h in cfg.get('custom_hooks', [])
               if 'corpus' in h]
    corpora += [cfg.model.corpus] if 'corpus' in cfg.model else []
    assert corpora
    for corpus in corpora:
        assert corpus.labels_file == '/mnt/t/labels.txt'
        assert corpus.wiki_dir == '/mnt/t/wiki'
    # Paths outside the roots (caches, checkpoints) stay where they were.
    assert any(s.startswith('data/cache/') for s in every)


@pytest.mark.parametrize('path', DEMO_CONFIGS,
                         ids=[osp.basename(p) for p in DEMO_CONFIGS])
def test_demo_configs_move_their_data(path):
    cfg = Config.fromfile(path)
    old = cfg.data_root
    apply_root_options(cfg, parse('data_root=/mnt/demo'))
    assert not [s for s in strings(cfg.to_dict()) if s.startswith(old)]
    for loader in loaders(cfg):
        assert innermost(loader.dataset).data_root == '/mnt/demo'


def test_prefix_is_a_whole_path_component():
    cfg = Config(dict(data_root='data/a', x='data/a', y='data/a/b.txt',
                      z=['data/ab/c', ('data/a', 1)], w=dict(v='data/abc')))
    apply_root_options(cfg, dict(data_root='/n'))
    assert cfg.x == '/n' and cfg.y == '/n/b.txt'
    assert cfg.z == ['data/ab/c', ('/n', 1)] and cfg.w.v == 'data/abc'


def test_config_without_the_root_is_refused():
    cfg = Config(dict(train_dataloader=dict(dataset=dict(data_root='d'))))
    with pytest.raises(KeyError, match='needs a config with a top-level '
                       'text_root'):
        apply_root_options(cfg, dict(text_root='/t'))
    # Other options pass through untouched.
    assert apply_root_options(cfg, dict(a=1)) == dict(a=1)
