"""Unit tests of the demo runner's modules (``tools/demo/demo_*.py``).

The contract that makes the val selection valid: re-scoring a dump of the
heads' branch probabilities with ``demo_selection.rescore`` gives exactly the
scores the heads themselves predict with the chosen ``alpha`` / ``tau``.
"""
import argparse
import glob
import json
import math
import os.path as osp
import sys
import warnings

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401  (registers the heads)
from vlltr_mm.models.heads import LGRHead, LogitAdjustedLinearClsHead

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(REPO, 'tools', 'demo'))
import demo_report  # noqa: E402
import demo_selection as sel  # noqa: E402
import demo_stages  # noqa: E402

COUNTS = [50, 20, 8, 3, 1]
POINTS = [(0.2, 0.0), (0.5, 1.0), (1.0, 2.0), (0.0, 0.5), (0.7, 1.25)]


def softmax64(x):
    """A dumped probability: float32 softmax, read back as float64."""
    return x.float().softmax(-1).double().numpy()


def pred_scores(samples):
    return torch.stack([s.pred_score for s in samples]).double().numpy()


# ---------------------------------------------------------------- rescore


def lgr_head(alpha, tau, target='image', counts=COUNTS):
    return LGRHead(
        num_classes=5, in_channels=8, num_anchors=3,
        alpha=alpha, posthoc_tau=tau, posthoc_target=target,
        class_counts=counts)


@torch.no_grad()
def test_rescore_matches_lgr_head():
    torch.manual_seed(0)
    anchors = torch.randn(5, 3, 8)
    feats = (torch.randn(7, 8) * 3, )
    # The val dump is made with the stage's config: posthoc_tau = 0.
    dump_head = lgr_head(0.2, 0.0)
    dump_head.set_anchors(anchors)
    state = dump_head.state_dict()
    logits_image, logits_text = dump_head.branch_logits(feats)
    dumped = dump_head.predict(feats)
    p_img, p_txt = softmax64(logits_image), softmax64(logits_text)
    np.testing.assert_allclose(
        p_img, np.stack([s.pred_score_image.numpy() for s in dumped]))
    np.testing.assert_allclose(
        p_txt, np.stack([s.pred_score_text.numpy() for s in dumped]))
    pred = dict(image=p_img, text=p_txt, score=pred_scores(dumped))
    log_pi = sel.log_prior(COUNTS)
    for alpha, tau in POINTS:
        head = lgr_head(alpha, tau)
        head.load_state_dict(state)
        expected = pred_scores(head.predict(feats))
        got = sel.rescore(pred, log_pi, alpha=alpha, tau=tau)
        assert got.shape == (7, 5)
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6,
                                   err_msg=f'alpha={alpha}, tau={tau}')
        # The adjustment must matter for these points, or the test is void.
        if tau:
            plain = sel.rescore(pred, log_pi, alpha=alpha, tau=0.0)
            assert alpha == 0 or np.abs(plain - got).max() > 1e-3
    # alpha None re-scores the dumped fused score, i.e. the head's
    # posthoc_target='fused' with the dump's own alpha.
    for tau in (0.0, 1.0, 2.0):
        head = lgr_head(0.2, tau, target='fused')
        head.load_state_dict(state)
        np.testing.assert_allclose(
            sel.rescore(pred, log_pi, alpha=None, tau=tau),
            pred_scores(head.predict(feats)), rtol=0, atol=1e-6)


@torch.no_grad()
def test_rescore_matches_logit_adjusted_linear_head():
    torch.manual_seed(1)
    feats = (torch.randn(7, 8) * 3, )
    base = LogitAdjustedLinearClsHead(
        num_classes=5, in_channels=8, posthoc_tau=0.0, class_counts=COUNTS)
    torch.nn.init.normal_(base.fc.weight)
    pred = dict(score=pred_scores(base.predict(feats)))
    log_pi = sel.log_prior(COUNTS)
    for tau in (0.0, 0.5, 1.0, 2.0):
        head = LogitAdjustedLinearClsHead(
            num_classes=5, in_channels=8, posthoc_tau=tau,
            class_counts=COUNTS)
        head.load_state_dict(base.state_dict())
        expected = pred_scores(head.predict(feats))
        # Without branch scores alpha is ignored.
        for alpha in (None, 0.3):
            np.testing.assert_allclose(
                sel.rescore(pred, log_pi, alpha=alpha, tau=tau), expected,
                rtol=0, atol=1e-6, err_msg=f'tau={tau}')


def test_log_prior_matches_class_prior():
    for counts in (COUNTS, [50, 20, 0, 3, 1], [7]):
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # the zero-count warning
            head = LogitAdjustedLinearClsHead(
                num_classes=len(counts), in_channels=8, class_counts=counts)
        expected = head.class_prior.log_prior(torch.float64).numpy()
        got = sel.log_prior(counts)
        assert got.dtype == np.float64 and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # A class without images counts as one.
    np.testing.assert_allclose(sel.log_prior([3, 0]),
                               np.log([3 / 4, 1 / 4]))


def test_balanced_accuracy():
    gt = np.array([0, 0, 0, 0, 1, 2, 2])
    score = np.eye(3)[[0, 0, 0, 1, 1, 0, 2]]
    # Classes 0, 1, 2: 3/4, 1/1, 1/2; a class absent from gt is skipped.
    assert sel.balanced_accuracy(score, gt) == pytest.approx(
        (75 + 100 + 50) / 3)
    assert sel.balanced_accuracy(np.eye(4)[[0, 0, 0, 1, 1, 0, 2]],
                                 gt) == pytest.approx((75 + 100 + 50) / 3)


# ----------------------------------------------------------------- select


def grid_acc(choice, alpha, tau):
    return next(p['val_acc'] for p in choice['grid']
                if p['alpha'] == alpha and p['tau'] == tau)


def head_biased(margin, counts, per_class=2):
    """Image logits ``margin * onehot(y) + log(pi)``: a classifier that
    learnt the training prior; exactly right once ``tau = 1``."""
    log_pi = sel.log_prior(counts)
    c = len(counts)
    gt = np.repeat(np.arange(c), per_class)
    logits = margin * np.eye(c)[gt] + log_pi
    return gt, np.exp(logits) / np.exp(logits).sum(1, keepdims=True)


def test_select_tau_unique_best():
    counts = [100, 10, 1]
    gt, score = head_biased(0.1, counts)
    choice = sel.select(dict(gt=gt, score=score), counts, 'tau')
    assert choice['alpha'] is None and choice['tau'] == 1.0
    assert choice['val_acc'] == 100.0
    assert len(choice['grid']) == len(sel.TAUS)
    assert [p['tau'] for p in choice['grid']] == list(sel.TAUS)
    others = [p['val_acc'] for p in choice['grid'] if p['tau'] != 1.0]
    assert max(others) < 100.0
    assert grid_acc(choice, None, 0.0) == pytest.approx(100 / 3, abs=1e-3)


def test_select_tau_tie_takes_smallest_tau():
    counts = [100, 10, 1]
    # With a margin of 2 several taus are perfect: 0.75, 1.0 and 1.25.
    gt, score = head_biased(2.0, counts)
    choice = sel.select(dict(gt=gt, score=score), counts, 'tau')
    perfect = [p['tau'] for p in choice['grid'] if p['val_acc'] == 100.0]
    assert perfect == [0.75, 1.0, 1.25]
    assert choice['tau'] == 0.75 and choice['alpha'] is None


def alpha_case():
    """Class 0 is right iff alpha > 0.55, class 1 iff alpha < 0.65, class 2
    always: alpha = 0.6 is the one best grid point, whatever tau (the
    counts are uniform, so tau changes nothing)."""
    image = np.array([[0.6, 0.15, 0.25], [0.5, 0.15, 0.35],
                      [0.1, 0.1, 0.8]])
    text = np.array([[0.2, 0.75, 0.05], [0.1, 0.75, 0.15],
                     [0.1, 0.1, 0.8]])
    return dict(gt=np.array([0, 1, 2]), image=image, text=text,
                score=0.2 * image + 0.8 * text)


def test_select_alpha_unique_best():
    pred = alpha_case()
    for default in (0.2, 0.0, 1.0):
        choice = sel.select(pred, [5, 5, 5], 'alpha', default_alpha=default)
        assert choice['alpha'] == 0.6 and choice['tau'] == 0.0
        assert choice['val_acc'] == 100.0
        assert [p['alpha'] for p in choice['grid']] == list(sel.ALPHAS)
        assert {p['tau'] for p in choice['grid']} == {0.0}
        assert max(p['val_acc'] for p in choice['grid']
                   if p['alpha'] != 0.6) < 100.0
    # Both: every tau ties (uniform prior), the smallest wins.
    choice = sel.select(pred, [5, 5, 5], 'alpha+tau')
    assert len(choice['grid']) == len(sel.ALPHAS) * len(sel.TAUS)
    assert (choice['alpha'], choice['tau']) == (0.6, 0.0)
    assert all(grid_acc(choice, 0.6, t) == 100.0 for t in sel.TAUS)


def test_select_alpha_tau_known_point_and_alpha_tie():
    counts = [100, 10, 1]
    gt, image = head_biased(0.1, counts)
    # An uninformative text branch: every alpha > 0 ranks like the image
    # branch, so only tau decides and alpha ties over 0.1 ... 1.0.
    pred = dict(gt=gt, image=image, text=np.full_like(image, 1 / 3),
                score=image)
    for default, alpha in ((0.2, 0.2), (0.0, 0.1), (0.73, 0.7), (1.0, 1.0)):
        choice = sel.select(pred, counts, 'alpha+tau', default_alpha=default)
        assert (choice['alpha'], choice['tau']) == (alpha, 1.0), default
        assert choice['val_acc'] == 100.0
    best = [(p['alpha'], p['tau']) for p in choice['grid']
            if p['val_acc'] == 100.0]
    assert best == [(a, 1.0) for a in sel.ALPHAS if a > 0]
    # 'tau' alone on an LGR dump adjusts the fused score; alpha stays None.
    choice = sel.select(pred, counts, 'tau')
    assert choice['alpha'] is None and choice['tau'] == 1.0


def test_options():
    assert sel.options({}) == []
    assert sel.options(dict(alpha=None, tau=1.25, val_acc=1.0,
                            grid=[])) == ['model.head.posthoc_tau=1.25']
    assert sel.options(dict(alpha=0.6, tau=0.0)) == [
        'model.head.alpha=0.6',
        'model.head.posthoc_tau=0.0'
    ]
    assert sel.options(dict(alpha=0.0, tau=2.0)) == [
        'model.head.alpha=0.0',
        'model.head.posthoc_tau=2.0'
    ]
    # What select returns goes straight in.
    choice = sel.select(alpha_case(), [5, 5, 5], 'alpha')
    assert sel.options(choice)[-1] == 'model.head.posthoc_tau=0.0'


def test_options_override_la_config(monkeypatch):
    # tau = 0 must reach the LA config, whose default is 1.0.
    monkeypatch.chdir(REPO)
    for name, choice, expected in (
            ('lgr-la', dict(alpha=0.6, tau=0.0), (0.6, 0.0)),
            ('baseline-la', dict(alpha=None, tau=0.0), (None, 0.0))):
        cfg = Config.fromfile(f'configs/vlltr/demo/{name}_demo_fmnist-lt.py')
        assert cfg.model.head.posthoc_tau == 1.0
        cfg.merge_from_dict(parse_options(sel.options(choice)))
        head = cfg.model.head
        got = (head.get('alpha') if expected[0] else None, head.posthoc_tau)
        assert got == expected and isinstance(head.posthoc_tau, float)


# -------------------------------------------------------- load_predictions


@torch.no_grad()
def test_load_predictions(tmp_path):
    torch.manual_seed(2)
    head = lgr_head(0.2, 0.0)
    head.set_anchors(torch.randn(5, 3, 8))
    feats = (torch.randn(6, 8), )
    gt = [0, 4, 2, 2, 1, 3]

    def dump(samples, path):
        # What tools/test.py --out x.pkl does: the evaluator gets
        # DataSample.to_dict() and DumpResults pickles the list.
        metric = DumpResults(out_file_path=str(path))
        metric.process(None, [s.to_dict() for s in samples])
        metric.compute_metrics(metric.results)

    samples = head.predict(
        feats, [DataSample(metainfo=dict(sample_idx=i, img_path=f'{i}.png'))
                .set_gt_label(k) for i, k in enumerate(gt)])
    dump(samples, tmp_path / 'lgr.pkl')
    pred = sel.load_predictions(str(tmp_path / 'lgr.pkl'))
    assert set(pred) == {'gt', 'score', 'image', 'text'}
    assert pred['gt'].dtype == np.int64 and pred['gt'].tolist() == gt
    for key, field in (('score', 'pred_score'),
                       ('image', 'pred_score_image'),
                       ('text', 'pred_score_text')):
        assert pred[key].dtype == np.float64 and pred[key].shape == (6, 5)
        np.testing.assert_array_equal(
            pred[key], np.stack([s.get(field).numpy() for s in samples]))

    linear = LogitAdjustedLinearClsHead(num_classes=5, in_channels=8,
                                        posthoc_tau=0.0)
    samples = linear.predict(
        feats, [DataSample().set_gt_label(k) for k in gt])
    dump(samples, tmp_path / 'linear.pkl')
    pred = sel.load_predictions(str(tmp_path / 'linear.pkl'))
    assert set(pred) == {'gt', 'score'}
    assert pred['gt'].dtype == np.int64 and pred['score'].shape == (6, 5)
    np.testing.assert_array_equal(pred['score'], pred_scores(samples))


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
    assert demo_report.cell(dict(x=100.0, x_std=0.0), 'x') == '100.0 ± 0.0'


def test_markdown():
    result = fake_result([0, 1])
    table = demo_report.markdown(result).splitlines()
    assert 'seeds 0, 1' in table[0] and result['budget'] in table[0]
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


def test_write(tmp_path):
    from PIL import Image
    assert set(demo_report.PLOTTED) <= {m.label for m in METHODS}
    result = fake_result([0, 1])
    table = demo_report.write(result, str(tmp_path))
    assert table == demo_report.markdown(result)
    assert json.loads((tmp_path / 'results.json').read_text()) == result
    assert (tmp_path / 'results.md').read_text() == table + '\n'
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
