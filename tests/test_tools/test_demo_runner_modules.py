"""Unit tests of the demo runner's modules (``tools/demo/demo_*.py``).

The alpha / tau selection they use is tested with its module
(tests/test_evaluation/test_fusion_selection.py); the runner end to end in
test_run_demo.py.
"""
import argparse
import glob
import json
import math
import os.path as osp
import sys
import threading
import time

import numpy as np
import pytest
from mmengine.config import Config, DictAction

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
import demo_eval  # noqa: E402
import demo_report  # noqa: E402
import demo_schedule  # noqa: E402
import demo_stages  # noqa: E402
import run_demo  # noqa: E402

# --------------------------------------------------------- dataset_options

DATA = dict(
    data_root='/tmp/x',
    ann_files=dict(train='/tmp/x/X_train.txt', val='/tmp/x/X_val.txt',
                   test='/tmp/x/X_test.txt'),
    classes=['a', 'b', 'c', 'd', 'e', 'f'],
    text_labels_file='/tmp/x/text/labels.txt',
    wiki_dir='/tmp/x/text/wiki',
    checkpoint='/tmp/x/clip.pth')
# What the runner's stages read; unused top-level variables of the base
# files (``corpus``, ``demo_weights``, ``data_root``) may keep their value.
USED = ('train_dataloader', 'val_dataloader', 'test_dataloader',
        'val_evaluator', 'test_evaluator', 'model', 'data_preprocessor',
        'custom_hooks')
CONFIGS = sorted(glob.glob(osp.join(REPO, 'configs', 'vlltr', 'demo',
                                    '*.py')))


def parse_options(opts):
    """``--cfg-options`` as ``tools/train.py`` parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *opts]).cfg_options


def nodes(node, path=''):
    """Every (path, dict) in a config tree."""
    if isinstance(node, dict):
        yield path, node
        for key, value in node.items():
            yield from nodes(value, f'{path}.{key}' if path else key)
    elif isinstance(node, (list, tuple)):
        for i, value in enumerate(node):
            yield from nodes(value, f'{path}.{i}')


def test_demo_configs_found():
    names = {osp.basename(c) for c in CONFIGS}
    assert {s.config for s in demo_stages.STAGES} <= names
    assert {m.config for m in demo_stages.METHODS} <= names
    assert len(CONFIGS) == 8


@pytest.mark.parametrize('config', CONFIGS, ids=osp.basename)
def test_dataset_options(config, monkeypatch):
    monkeypatch.chdir(REPO)
    rel = osp.relpath(config, REPO)
    opts = demo_stages.dataset_options(rel, DATA)
    assert all(o.count('=') == 1 for o in opts), opts
    cfg = Config.fromfile(rel)
    cfg.merge_from_dict(parse_options(opts))
    used = {k: cfg.to_dict()[k] for k in USED if k in cfg}
    text = Config(used).pretty_text
    for old in ('FashionMNIST_LT_', 'configs/vlltr/demo_text/',
                'data/demo/demo_clip.pth', 'data/demo/fashion_mnist_lt'):
        assert old not in text, (old, rel)

    num_classes = [n['num_classes'] for _, n in nodes(used)
                   if 'num_classes' in n]
    assert num_classes and set(num_classes) == {6}
    splits = set()
    for path, node in nodes(used):
        kind = node.get('type')
        if kind == 'LongTailListDataset':
            split = path.split('_dataloader')[0]
            assert split in ('train', 'val', 'test'), path
            assert node['ann_file'] == DATA['ann_files'][split], path
            assert node['data_root'] == DATA['data_root'], path
            splits.add(split)
        elif kind == 'ClassTextCorpus':
            assert node['labels_file'] == DATA['text_labels_file'], path
            assert node['wiki_dir'] == DATA['wiki_dir'], path
        if 'pretrained' in node and node['pretrained']:
            assert node['pretrained'] == DATA['checkpoint'], path
    assert splits == {'train', 'val', 'test'}
    for key in ('val_evaluator', 'test_evaluator'):
        assert used[key]['train_ann_file'] == DATA['ann_files']['train']
        assert used[key]['num_classes'] == 6

    corpora = [p for p, n in nodes(used) if n.get('type') ==
               'ClassTextCorpus']
    name = osp.basename(config)
    if name.startswith('cvlp'):
        assert sorted(corpora) == ['model.corpus',
                                   'train_dataloader.dataset.corpus']
        assert cfg.model.backbone.pretrained == DATA['checkpoint']
        assert cfg.model.text_encoder.pretrained == DATA['checkpoint']
    elif name.startswith('lgr'):
        assert corpora == ['custom_hooks.1.corpus']
    elif name.startswith('baseline'):
        assert cfg.model.backbone.pretrained == DATA['checkpoint']


# ------------------------------------------------------------------ report

METHODS = demo_stages.METHODS
CHOICES = {
    '': ({}, {}),
    'tau': (dict(alpha=None, tau=0.5), dict(alpha=None, tau=1.0)),
    'alpha': (dict(alpha=0.3, tau=0.0), dict(alpha=0.5, tau=0.0)),
    'alpha+tau': (dict(alpha=0.4, tau=1.25), dict(alpha=0.6, tau=1.0)),
}
SHOWN = {'': '-', 'tau': 'tau 0.5/1', 'alpha': 'alpha 0.3/0.5',
         'alpha+tau': 'alpha 0.4/0.6, tau 1.25/1'}


def fake_metrics(i, seed):
    """Seed 1 is seed 0 plus (2, 1, 0.5, 3) on (top1, many, medium, few)
    and plus (0, 1, ..., 5) per class."""
    return {
        'accuracy/top1': 50.0 + i + 2 * seed,
        'accuracy/many': 80.0 - i + seed,
        'accuracy/medium': 40.0 + 0.5 * seed,
        'accuracy/few': 10.0 * i + 3 * seed,
        'accuracy/per_class': [10.0 * c + i + c * seed for c in range(6)],
    }


def fake_per_seed(seeds):
    per_seed = {}
    for seed in seeds:
        per_seed[seed] = {}
        for i, m in enumerate(METHODS):
            choice = dict(CHOICES[m.select][seed])
            if m.select:
                choice.update(val_acc=70.0, grid=[dict(alpha=None, tau=0.0,
                                                       val_acc=70.0)])
            per_seed[seed][m.label] = dict(metrics=fake_metrics(i, seed),
                                           choice=choice)
    return per_seed


def fake_result(seeds):
    return dict(
        dataset='Fake-LT (6 classes)', dataset_short='Fake-LT',
        classes=['c0', 'c1', 'c2', 'c3', 'c4', 'c5'],
        train_counts=[300, 120, 50, 20, 8, 3], seeds=list(seeds),
        budget='cvlp 2 ep, lgr 1 ep',
        methods=demo_report.aggregate(METHODS, fake_per_seed(seeds)))


def test_aggregate_two_seeds():
    rows = demo_report.aggregate(METHODS, fake_per_seed([0, 1]))
    assert [r['method'] for r in rows] == [m.label for m in METHODS]
    diffs = dict(overall=2.0, many=1.0, medium=0.5, few=3.0)
    for i, (m, r) in enumerate(zip(METHODS, rows)):
        assert (r['run'], r['config'], r['paper']) == (m.run, m.config,
                                                       m.paper)
        assert r['selected_on_val'] == (m.select or None)
        assert sorted(r['seeds']) == ['0', '1']
        first = fake_metrics(i, 0)
        for key, name in (('overall', 'top1'), ('many', 'many'),
                          ('medium', 'medium'), ('few', 'few')):
            x0 = first[f'accuracy/{name}']
            assert r['seeds']['0'][key] == x0
            assert r[key] == pytest.approx(x0 + diffs[key] / 2)
            # Sample std of two values: |x0 - x1| / sqrt(2).
            assert r[f'{key}_std'] == pytest.approx(diffs[key] /
                                                    math.sqrt(2))
        np.testing.assert_allclose(
            r['per_class'], [10 * c + i + c / 2 for c in range(6)])
        np.testing.assert_allclose(r['per_class_std'],
                                   [c / math.sqrt(2) for c in range(6)])
        for seed in (0, 1):
            chosen = r['seeds'][str(seed)]['chosen']
            assert 'grid' not in chosen
            expected = dict(CHOICES[m.select][seed])
            if m.select:
                expected['val_acc'] = 70.0
            assert chosen == expected
    json.dumps(rows)  # plain types only


def test_aggregate_single_seed():
    rows = demo_report.aggregate(METHODS, fake_per_seed([0]))
    for i, r in enumerate(rows):
        m = fake_metrics(i, 0)
        assert r['overall'] == m['accuracy/top1'] and r['few'] == (
            m['accuracy/few'])
        for key in demo_report.KEYS:
            assert r[f'{key}_std'] == 0.0
        assert r['per_class'] == m['accuracy/per_class']
        assert r['per_class_std'] == [0.0] * 6


def test_cell():
    assert demo_report.cell(dict(x=12.34, x_std=0.44), 'x') == '12.3 ± 0.4'
    assert demo_report.cell(dict(x=100.0, x_std=0.0), 'x', 3) == (
        '100.0 ± 0.0')
    # One seed: no "± 0.0", the caption says n = 1.
    assert demo_report.cell(dict(x=12.34, x_std=0.0), 'x', 1) == '12.3'


def test_markdown():
    result = fake_result([0, 1])
    table = demo_report.markdown(result).splitlines()
    assert '(mean ± std over seeds 0, 1, n = 2)' in table[0]
    assert result['budget'] in table[0]
    assert table[2].startswith('| Method | Overall | Many | Medium | Few |')
    rows = table[4:]
    assert len(rows) == len(METHODS)
    for line, r, m in zip(rows, result['methods'], METHODS):
        c = demo_report.cell
        assert line == (
            f"| {m.label} | {c(r, 'overall')} | {c(r, 'many')} | "
            f"{c(r, 'medium')} | {c(r, 'few')} | {SHOWN[m.select]} | "
            f'{m.paper} |')
    # Spot-check one cell by hand: method 0, top1 50 and 52.
    assert rows[0].split(' | ')[1] == '51.0 ± 1.4'


def test_markdown_one_seed():
    result = fake_result([0])
    table = demo_report.markdown(result)
    lines = table.splitlines()
    assert '(seed 0, n = 1)' in lines[0] and '±' not in table
    # Method 0 of seed 0: top1 50, many 80, medium 40, few 0.
    assert lines[4].startswith(f'| {METHODS[0].label} | 50.0 | 80.0 | '
                               '40.0 | 0.0 | - |')
    # The chosen values of one seed, without a slash.
    assert '| alpha 0.4, tau 1.25 |' in table


def test_write(tmp_path):
    from PIL import Image
    assert set(demo_report.PLOTTED) <= {m.label for m in METHODS}
    result = fake_result([0, 1])
    table = demo_report.write(result, str(tmp_path))
    assert table == demo_report.markdown(result)
    assert json.loads((tmp_path / 'results.json').read_text()) == result
    assert (tmp_path / 'results.md').read_text() == (
        table + '\n\n![per-class test accuracy](per_class_accuracy.png)\n')
    with Image.open(tmp_path / 'per_class_accuracy.png') as img:
        assert img.format == 'PNG' and min(img.size) > 100
    # One seed, too.
    single = tmp_path / 'single'
    single.mkdir()
    demo_report.write(fake_result([0]), str(single))
    with Image.open(single / 'per_class_accuracy.png') as img:
        assert img.format == 'PNG'


def test_compare():
    result = fake_result([0])
    recorded = fake_result([0, 1])
    recorded['methods'] = recorded['methods'][1:]  # one row not recorded
    text = demo_report.compare(result, recorded).splitlines()
    assert 'seeds [0]' in text[0] and '2-seed run' in text[0]
    rows = text[3:]
    assert len(rows) == len(METHODS) - 1
    old = {r['method']: r for r in recorded['methods']}
    for line, r in zip(rows, result['methods'][1:]):
        o = old[r['method']]
        assert line == (
            f"| {r['method']} | {r['overall']:.1f} | "
            f"{demo_report.cell(o, 'overall')} | {r['few']:.1f} | "
            f"{demo_report.cell(o, 'few')} |")
    assert METHODS[0].label not in '\n'.join(rows)


def test_plot_draws_the_five_main_rows(monkeypatch, tmp_path):
    tool = demo_report._plot_tool()
    drawn = {}
    real_plot = tool.plot

    def spy(prep, path, title='', *args):
        drawn.update(prep=prep, title=title)
        real_plot(prep, path, title, *args)

    monkeypatch.setattr(demo_report, '_plot_tool', lambda: tool)
    monkeypatch.setattr(tool, 'plot', spy)
    result = fake_result([0, 1])
    demo_report.plot(result, str(tmp_path / 'p.png'))
    prep = drawn['prep']
    assert prep['labels'] == list(demo_report.PLOTTED) and len(
        prep['labels']) == 5
    assert 'baseline' in prep['labels'][0].lower()
    assert 'Zero-shot' in prep['labels'][2]
    # Classes by training count, largest first (here already in order).
    assert prep['counts'].tolist() == result['train_counts']
    index = [m.label for m in METHODS].index(demo_report.PLOTTED[3])
    np.testing.assert_allclose(prep['mean'][3],
                               [10 * c + index + c / 2 for c in range(6)])
    np.testing.assert_allclose(prep['std'][3],
                               [c / math.sqrt(2) for c in range(6)])
    assert 'Fake-LT' in drawn['title'] and 'mean ± std' in drawn['title']


# ---------------------------------------------------------------- schedule


def task(name, deps=(), cost=1.0, log=None, seconds=0.01, fail=False):
    def run():
        if log is not None:
            log.append(('start', name))
        time.sleep(seconds)
        if fail:
            raise RuntimeError(f'{name} failed')
        if log is not None:
            log.append(('end', name))
        return seconds
    return demo_schedule.Task(name, run, tuple(deps), cost)


def test_schedule_order_and_slots():
    events, lines = [], []
    tasks = [
        task('short', cost=1, log=events),
        task('long', cost=10, log=events),
        task('after-long', ['long'], cost=5, log=events),
        task('last', ['short', 'after-long'], cost=1, log=events),
    ]
    seconds = demo_schedule.run_tasks(tasks, 1, lines.append)
    assert set(seconds) == {t.name for t in tasks}
    # One slot: the longest chain first, dependencies before users.
    assert [n for e, n in events if e == 'start'] == [
        'long', 'after-long', 'short', 'last']
    assert len(lines) == 4 and lines[-1].startswith('last: done in 0 s [4/4')
    assert 'left]' in lines[0] and 'left' not in lines[-1]


def test_schedule_runs_slots_at_once():
    active, peak = [0], [0]
    lock = threading.Lock()

    def run():
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.1)
        with lock:
            active[0] -= 1
        return 0.1

    tasks = [demo_schedule.Task(f't{i}', run, (), 1.0) for i in range(5)]
    demo_schedule.run_tasks(tasks, 2, lambda line: None)
    assert peak[0] == 2


def test_schedule_failure_stops_the_rest():
    events, stopped = [], []
    tasks = [task('bad', cost=5, fail=True, log=events),
             task('slow', cost=1, seconds=0.3, log=events),
             task('user', ['bad'], log=events),
             task('later', ['slow'], log=events)]
    with pytest.raises(RuntimeError, match='bad failed'):
        demo_schedule.run_tasks(tasks, 2, lambda line: None,
                                lambda: stopped.append(1))
    assert stopped == [1]
    started = [n for e, n in events if e == 'start']
    # 'slow' ran beside and was waited for; nothing started after.
    assert sorted(started) == ['bad', 'slow'] and ('end', 'slow') in events


def test_schedule_refuses_bad_graphs():
    with pytest.raises(ValueError, match=r"unknown dependencies \['x'\]"):
        demo_schedule.run_tasks([task('a', ['x'])], 1, print)
    with pytest.raises(ValueError, match='dependency cycle'):
        demo_schedule.run_tasks([task('a', ['b']), task('b', ['a'])], 1,
                                print)


def test_progress_estimate(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(demo_schedule.time, 'time', lambda: now[0])
    tasks = [task('a', cost=10), task('b', cost=30), task('c', cost=20)]
    progress = demo_schedule.Progress(tasks, 100.0)
    now[0] = 120.0  # 'a' (cost 10) took 20 s: 2 s per unit, 50 left.
    assert progress.finish(tasks[0], 20.0) == (
        'a: done in 20 s [1/3, elapsed 20 s, about 1 min 40 s left]')
    # A skipped task leaves both sides of the rate.
    assert progress.finish(tasks[1], 0.0) == (
        'b: already done, kept (--force redoes it) [2/3, elapsed 20 s, '
        'about 40 s left]')
    now[0] = 160.0
    assert progress.finish(tasks[2], 40.0) == (
        'c: done in 40 s [3/3, elapsed 1 min 00 s]')
    assert demo_schedule.clock(3725) == '1 h 02 min'


def test_seed_tasks_graph(tmp_path):
    runner = demo_stages.StageRunner(str(tmp_path), {}, 3, quick=False,
                                     force=False)
    tasks = {t.name: t for t in run_demo.seed_tasks(runner)}
    stages = [s.name for s in demo_stages.STAGES]
    assert list(tasks) == ['seed 3 cvlp-init'] + [
        f'seed 3 {s}' for s in stages] + ['seed 3 eval']
    assert tasks['seed 3 cvlp'].deps == ()
    assert tasks['seed 3 baseline'].deps == ()
    assert tasks['seed 3 lgr'].deps == ('seed 3 cvlp', )
    assert tasks['seed 3 lgr-nocvlp'].deps == ('seed 3 cvlp-init', )
    assert set(tasks['seed 3 eval'].deps) == set(tasks) - {'seed 3 eval'}
    # Full-run costs: start-up plus the recorded seconds per epoch.
    assert tasks['seed 3 cvlp'].cost == pytest.approx(7 + 10 * 17)
    assert tasks['seed 3 baseline'].cost == pytest.approx(7 + 18 * 9.4)


def test_slots_and_threads(monkeypatch):
    for cores, jobs, expected in ((2, None, (2, 1)), (16, None, (4, 4)),
                                  (1, None, (1, 1)), (2, 1, (1, 2)),
                                  (8, 3, (3, 2))):
        monkeypatch.setattr(run_demo.os, 'cpu_count', lambda: cores)
        assert run_demo.slots_and_threads(jobs) == expected


def test_union_of_selections():
    assert demo_eval._union(['alpha', 'alpha+tau']) == 'alpha+tau'
    assert demo_eval._union(['tau']) == 'tau'
    assert demo_eval._union(s for s in ('alpha', 'tau')) == 'alpha+tau'
    assert demo_eval._union(['', 'tau', 'alpha']) == 'alpha+tau'


def test_evaluation_loaders_load_in_process(tmp_path):
    runner = demo_stages.StageRunner(str(tmp_path), DATA, 0, quick=False,
                                     force=False)
    config = 'lgr_demo_fmnist-lt.py'
    train = runner.options(config)
    test = runner.options(config, evaluate=True)
    assert not [o for o in train if 'num_workers' in o]
    assert test == train + ['val_dataloader.num_workers=0',
                            'test_dataloader.num_workers=0']
    quick = demo_stages.StageRunner(str(tmp_path), DATA, 0, quick=True,
                                    force=False)
    assert 'train_dataloader.num_workers=0' in quick.options(config)
