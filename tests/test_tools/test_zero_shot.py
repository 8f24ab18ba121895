"""tools/analysis/zero_shot.py: the first-hour zero-shot check.

The tool runs for real on the CPU demo's CVLP config, with a tiny open_clip
model saved as its "CLIP weights" and tiny generated data, and must print
the same accuracies that ``tools/test.py`` gives for a checkpoint of the
same initial model.
"""
import json
import math
import os
import os.path as osp
import subprocess
import sys

import pytest
import torch
from mmengine.config import Config

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
TOOL = 'tools/analysis/zero_shot.py'
DEMO = 'configs/vlltr/demo/cvlp_demo_fmnist-lt.py'
TINY = 'vlltr-tiny-rn'
KEYS = ('overall', 'many', 'medium', 'few')


def run(args, returncode=0):
    env = dict(os.environ, OMP_NUM_THREADS='1')
    proc = subprocess.run([sys.executable, *args], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == returncode, out[-4000:]
    return out


def make_demo_options(root, make_data):
    """Tiny data, class text and "CLIP weights" for the demo CVLP config.

    Args:
        root (Path): An empty folder.
        make_data (callable): The ``tiny_baseline_data`` fixture.

    Returns:
        tuple: The weights file (a tiny random open_clip model) and the
        ``--cfg-options`` that run the demo CVLP config on 6 generated
        classes with that model, but for the towers' ``pretrained``.
    """
    data = str(root / 'data')
    opts = make_data(data, test_per_class=2)
    wiki = root / 'wiki'
    wiki.mkdir()
    names = open(osp.join(data, 'labels.txt')).read().split()
    for i, name in enumerate(names):
        colour, orient = name.split('_')
        (wiki / f'desc_{i}.txt').write_text(
            f'A {colour} tile. Its stripes run {orient}. It is square.\n')
    from vlltr_mm.models.open_clip_adapter.factory import build_open_clip
    torch.manual_seed(0)
    weights = str(root / 'tiny_clip.pt')
    torch.save(build_open_clip(TINY).state_dict(), weights)
    for split in ('val', 'test'):
        key = f'{split}_dataloader.dataset'
        opts += [f'{key}.ann_file=ImageNet_LT_{split}.txt',
                 f'{key}.num_classes=6', f'{key}.pipeline.1.scale=(32,32)',
                 # Every shot group non-empty (training counts 12 ... 3).
                 f'{split}_evaluator.num_classes=6',
                 f'{split}_evaluator.many_threshold=10',
                 f'{split}_evaluator.few_threshold=4']
    opts += [f'model.{tower}.model_name={TINY}'
             for tower in ('backbone', 'text_encoder')]
    # The tiny model's text tower is CLIP's causal transformer, which
    # reads the full context, so the demo's padding trim must be off.
    opts += ['model.text_encoder.frozen_stages=-1',
             'model.text_encoder.trim_padding=False',
             'data_preprocessor.num_classes=6',
             f'model.corpus.labels_file={data}/labels.txt',
             f'model.corpus.wiki_dir={wiki}',
             f'model.corpus.tokenizer={TINY}',
             'model.corpus.context_length=77',
             f'model.corpus.cache_dir={root}/cache']
    return weights, opts


@pytest.fixture(scope='module')
def demo_options(tmp_path_factory, tiny_baseline_data):
    root = tmp_path_factory.mktemp('zero_shot')
    weights, opts = make_demo_options(root, tiny_baseline_data)
    return root, opts + [f'model.{tower}.pretrained={weights}'
                         for tower in ('backbone', 'text_encoder')]


@pytest.mark.slow
def test_zero_shot_equals_test_tool_on_initial_checkpoint(demo_options):
    root, opts = demo_options
    work = root / 'zero_shot'
    out = run([TOOL, DEMO, '--work-dir', str(work), '--cfg-options', *opts])
    result = json.loads((work / 'zero_shot.json').read_text())
    assert result['split'] == 'test' and result['prototypes'] == 'prompts'
    assert result['pretrained']['backbone'].endswith('tiny_clip.pt')
    measured = result['measured']
    assert set(measured) == set(KEYS)
    assert all(0 <= measured[k] <= 100 for k in KEYS), measured
    # The console table: one column per metric, no paper row (the demo is
    # not a benchmark of the paper).
    row = 'measured' + ''.join(f'{measured[k]:>9.1f}' for k in KEYS)
    assert f'{row[:10]:10}' in out and row[8:] in out
    assert 'not a shipped benchmark' in out and '\npaper ' not in out

    # tools/test.py on a checkpoint of the same initial model.
    ckpt = str(root / 'init.pth')
    run(['tools/model_converters/cvlp_init_checkpoint.py', DEMO, ckpt,
         '--cfg-options', *opts])
    metrics_file = root / 'metrics.json'
    run(['tools/test.py', DEMO, ckpt, '--work-dir', str(root / 'test'),
         '--out', str(metrics_file), '--out-item', 'metrics',
         '--cfg-options', *opts])
    metrics = json.loads(metrics_file.read_text())
    for key, name in zip(KEYS, ('top1', 'many', 'medium', 'few')):
        assert measured[key] == metrics[f'accuracy/{name}'], key


@pytest.mark.slow
def test_class_text_in_another_order_is_refused(demo_options):
    root, opts = demo_options
    labels = (root / 'data' / 'labels.txt').read_text().split()
    swapped = root / 'swapped_labels.txt'
    swapped.write_text('\n'.join([labels[1], labels[0], *labels[2:]]))
    out = run([TOOL, DEMO, '--work-dir', str(root / 'swapped'),
               '--cfg-options', *opts,
               f'model.corpus.labels_file={swapped}'], returncode=1)
    assert 'zero-shot: the class text' in out
    assert (f"{labels[0]!r} is class 1 in the class text ({swapped}) but "
            'class 0 in the test set') in out
    assert not (root / 'swapped' / 'zero_shot.json').exists()


@pytest.fixture
def tool(load_tool):
    return load_tool(TOOL)


def args_for(tool, config, *extra):
    return tool.parse_args([osp.join(ROOT, config), *extra])


def test_zero_shot_config_val_split_and_prototypes(tool):
    path = 'configs/vlltr/cvlp_r50_imagenet-lt.py'
    args = args_for(tool, path, '--split', 'val', '--prototypes', 'all')
    cfg = Config.fromfile(args.config)
    cfg.load_from = 'some.pth'
    cfg = tool.zero_shot_config(cfg, args)
    assert cfg.load_from is None and cfg.resume is False
    assert cfg.model.prototype_sentences == 'all'
    assert cfg.test_dataloader.dataset.ann_file == 'ImageNet_LT_val.txt'
    assert cfg.test_evaluator == cfg.val_evaluator
    assert cfg.work_dir == osp.join('./work_dirs', 'zero_shot',
                                    'cvlp_r50_imagenet-lt')

    args = args_for(tool, 'configs/vlltr/lgr_r50_imagenet-lt.py')
    with pytest.raises(SystemExit, match='lgr_r50_imagenet-lt.py builds '
                       r'\w+, not CVLP: zero-shot classification needs '
                       'a CVLP config'):
        tool.zero_shot_config(Config.fromfile(args.config), args)


@pytest.mark.parametrize('config,split,expected', [
    ('cvlp_r50_imagenet-lt.py', 'test', (59.8, 60.8, 59.3, 58.6)),
    ('cvlp_r50_places-lt.py', 'test', (38.0, 37.5, 37.5, 40.1)),
    ('cvlp_r50_inat2018.py', 'test', (3.4, )),
    ('cvlp_r50_inat2018.py', 'val', (3.4, )),
    ('cvlp_r50_imagenet-lt.py', 'val', (59.8, 60.8, 59.3, 58.6)),
    ('cvlp_vit-b16_places-lt.py', 'test', None),
    ('demo/cvlp_demo_fmnist-lt.py', 'test', None),
])
def test_paper_figures_by_dataset(tool, config, split, expected):
    args = args_for(tool, f'configs/vlltr/{config}', '--split', split)
    cfg = tool.zero_shot_config(Config.fromfile(args.config), args)
    figures, note = tool.paper_figures(cfg, split)
    if expected is None:
        assert figures is None
        assert ('ResNet-50 only, not ViT-B-16' in note
                if 'vit' in config else 'not a shipped benchmark' in note)
        return
    assert tuple(figures.values()) == expected
    assert '+-1 point is normal' in note
    # iNat's val split is its test split; ImageNet-LT's is not.
    assert ('this run is on val' in note) == (
        split == 'val' and 'inat' not in config)


def test_report_lines(tool):
    measured = dict(overall=60.25, many=61.0, medium=math.nan, few=57.0)
    figures = dict(overall=59.8, many=60.8, medium=59.3, few=58.6)
    lines = tool.report_lines(measured, figures, 'note', 'title')
    assert lines == [
        'title',
        '            overall     many   medium      few',
        'measured       60.2     61.0      n/a     57.0',
        'paper          59.8     60.8     59.3     58.6',
        'diff           +0.5     +0.2              -1.6',
        'note']
