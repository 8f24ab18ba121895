"""The alpha / tau grid search (``vlltr_mm.evaluation.fusion_selection``).

The contract that makes the selection valid: re-scoring a dump of the
heads' branch probabilities with ``rescore`` gives exactly the scores the
heads themselves predict with the chosen ``alpha`` / ``tau``.
"""
import argparse
import contextlib

import numpy as np
import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.evaluator import DumpResults
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401  (registers the heads)
from vlltr_mm.evaluation import fusion_selection as sel
from vlltr_mm.models.heads import LGRHead, LogitAdjustedLinearClsHead

COUNTS = [50, 20, 8, 3, 1]
POINTS = [(0.2, 0.0), (0.5, 1.0), (1.0, 2.0), (0.0, 0.5), (0.7, 1.25)]


def softmax64(x):
    """A dumped probability: float32 softmax, read back as float64."""
    return x.float().softmax(-1).double().numpy()


def pred_scores(samples):
    return torch.stack([s.pred_score for s in samples]).double().numpy()


def lgr_head(alpha, tau, target='image', counts=COUNTS):
    return LGRHead(
        num_classes=5, in_channels=8, num_anchors=3,
        alpha=alpha, posthoc_tau=tau, posthoc_target=target,
        class_counts=counts)


# ---------------------------------------------------------------- rescore


@torch.no_grad()
def test_rescore_matches_lgr_head():
    torch.manual_seed(0)
    anchors = torch.randn(5, 3, 8)
    feats = (torch.randn(7, 8) * 3, )
    # The val dump is made with posthoc_tau = 0 (choose_fusion forces it).
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
    for target in ('image', 'fused'):
        for alpha, tau in POINTS:
            head = lgr_head(alpha, tau, target=target)
            head.load_state_dict(state)
            expected = pred_scores(head.predict(feats))
            got = sel.rescore(pred, log_pi, alpha, tau, target)
            assert got.shape == (7, 5) and got.dtype == np.float64
            np.testing.assert_allclose(
                got, expected, rtol=0, atol=1e-6,
                err_msg=f'{target}: alpha={alpha}, tau={tau}')
            # The adjustment must matter for these points, or the test is
            # void.
            if tau and alpha:
                plain = sel.rescore(pred, log_pi, alpha, 0.0, target)
                assert np.abs(plain - got).max() > 1e-3
    # The two targets differ once tau != 0.
    assert np.abs(sel.rescore(pred, log_pi, 0.5, 1.0, 'image') -
                  sel.rescore(pred, log_pi, 0.5, 1.0, 'fused')).max() > 1e-3
    # alpha None re-scores the dumped fused score (the dump's own alpha).
    head = lgr_head(0.2, 1.0, target='fused')
    head.load_state_dict(state)
    np.testing.assert_allclose(
        sel.rescore(pred, log_pi, alpha=None, tau=1.0),
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
        with pytest.warns(UserWarning, match='no training image') \
                if 0 in counts else contextlib.nullcontext():
            head = LogitAdjustedLinearClsHead(
                num_classes=len(counts), in_channels=8, class_counts=counts)
        expected = head.class_prior.log_prior(torch.float64).numpy()
        got = sel.log_prior(counts)
        assert got.dtype == np.float64 and np.isfinite(got).all()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)
    # A class without images counts as one.
    with pytest.warns(UserWarning, match='no training image'):
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
    """Image probabilities of logits ``margin * onehot(y) + log(pi)``: a
    classifier that learnt the training prior; exactly right once
    ``tau = 1``."""
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
    for default, alpha in ((0.2, 0.2), (0.0, 0.1), (0.73, 0.7), (1.0, 1.0),
                           (0.25, 0.2)):
        # (0.25: 0.2 and 0.3 are equally near; the smaller wins.)
        choice = sel.select(pred, counts, 'alpha+tau', default_alpha=default)
        assert (choice['alpha'], choice['tau']) == (alpha, 1.0), default
        assert choice['val_acc'] == 100.0
    best = [(p['alpha'], p['tau']) for p in choice['grid']
            if p['val_acc'] == 100.0]
    assert best == [(a, 1.0) for a in sel.ALPHAS if a > 0]
    # 'tau' alone on an LGR dump keeps the config's alpha and adjusts the
    # image branch, or the fused score for posthoc_target='fused' (where
    # tau = 1 no longer cancels the prior exactly).
    choice = sel.select(pred, counts, 'tau', default_alpha=0.3)
    assert (choice['alpha'], choice['tau']) == (0.3, 1.0)
    fused = sel.select(pred, counts, 'tau', default_alpha=0.3,
                       target='fused')
    assert {p['alpha'] for p in fused['grid']} == {0.3}
    log_pi = sel.log_prior(counts)
    for p in fused['grid']:
        acc = sel.balanced_accuracy(
            sel.rescore(pred, log_pi, 0.3, p['tau'], 'fused'), gt)
        assert p['val_acc'] == round(acc, 4)
    assert fused['grid'] != choice['grid']


def test_select_custom_grids_and_chunks(monkeypatch):
    rng = np.random.default_rng(0)
    counts = [40, 20, 9, 4, 2]
    n = 37
    image = rng.dirichlet(np.ones(5), n)
    text = rng.dirichlet(np.ones(5), n)
    gt = rng.integers(0, 5, n)
    pred = dict(gt=gt, image=image.astype(np.float32),
                text=text.astype(np.float32), score=image)
    whole = sel.select(pred, counts, 'alpha+tau', 0.2, alphas=(0.9, 0.3),
                       taus=(1.5, 0.0, 0.5))
    # Sorted, tau-major; every point is the balanced accuracy of rescore.
    assert [(p['alpha'], p['tau']) for p in whole['grid']] == [
        (a, t) for t in (0.0, 0.5, 1.5) for a in (0.3, 0.9)]
    log_pi = sel.log_prior(counts)
    for p in whole['grid']:
        acc = sel.balanced_accuracy(
            sel.rescore(pred, log_pi, p['alpha'], p['tau']), gt)
        assert p['val_acc'] == round(acc, 4)
    # Chunked scoring (7 samples at a time) gives the same grid.
    monkeypatch.setattr(sel, '_CHUNK', 7)
    assert sel.select(pred, counts, 'alpha+tau', 0.2, alphas=(0.9, 0.3),
                      taus=(1.5, 0.0, 0.5)) == whole


def test_select_refuses():
    pred = alpha_case()
    with pytest.raises(ValueError, match='what must be one of'):
        sel.select(pred, [5, 5, 5], 'beta')
    with pytest.raises(ValueError, match='target must be one of'):
        sel.select(pred, [5, 5, 5], 'alpha', target='text')
    with pytest.raises(ValueError, match=r'alpha grid .* \[0, 1\]'):
        sel.select(pred, [5, 5, 5], 'alpha', alphas=(0.5, 1.5))
    with pytest.raises(ValueError, match='tau grid must be non-empty'):
        sel.select(pred, [5, 5, 5], 'tau', taus=())
    with pytest.raises(ValueError, match='tau grid .* >= 0'):
        sel.select(pred, [5, 5, 5], 'tau', taus=(-1.0, ))
    with pytest.raises(ValueError, match='branch scores'):
        sel.select(dict(gt=pred['gt'], score=pred['score']), [5, 5, 5],
                   'alpha+tau')


def test_grid_table():
    choice = sel.select(alpha_case(), [5, 5, 5], 'alpha', alphas=(0.2, 0.6))
    lines = sel.grid_table(choice).splitlines()
    assert lines[0].split() == ['tau', '\\', 'alpha', '0.2', '0.6']
    assert lines[1].split() == ['0', f"{grid_acc(choice, 0.2, 0.0):.2f}",
                                '100.00*']
    choice = sel.select(dict(gt=np.array([0, 1]), score=np.eye(2)), [3, 1],
                        'tau', taus=(0.0, 1.0))
    assert sel.grid_table(choice).splitlines()[1].split() == ['0', '100.00*']


# ---------------------------------------------------------------- options


def parse_options(opts):
    """``--cfg-options`` as ``tools/test.py`` parses them."""
    parser = argparse.ArgumentParser()
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(['--cfg-options', *opts]).cfg_options


def test_options():
    assert sel.options({}) == []
    assert sel.options(dict(alpha=None, tau=1.25, val_acc=1.0,
                            grid=[])) == ['model.head.posthoc_tau=1.25']
    assert sel.options(dict(alpha=0.6, tau=0.0)) == [
        'model.head.alpha=0.6', 'model.head.posthoc_tau=0.0']
    # What select returns goes straight in.
    choice = sel.select(alpha_case(), [5, 5, 5], 'alpha')
    assert sel.options(choice)[-1] == 'model.head.posthoc_tau=0.0'


def test_options_override_la_config(monkeypatch):
    import os.path as osp
    repo = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    # tau = 0 must reach the LA config, whose default is 1.0.
    monkeypatch.chdir(repo)
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


def dump(samples, path):
    """What tools/test.py --out x.pkl does: the evaluator gets
    DataSample.to_dict() and DumpResults pickles the list."""
    metric = DumpResults(out_file_path=str(path))
    metric.process(None, [s.to_dict() for s in samples])
    metric.compute_metrics(metric.results)


@torch.no_grad()
def test_load_predictions(tmp_path):
    torch.manual_seed(2)
    head = lgr_head(0.2, 0.0)
    head.set_anchors(torch.randn(5, 3, 8))
    feats = (torch.randn(6, 8), )
    gt = [0, 4, 2, 2, 1, 3]
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
        # The dumped dtype is kept; rescore computes in float64.
        assert pred[key].dtype == np.float32 and pred[key].shape == (6, 5)
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


def test_load_predictions_refuses(tmp_path):
    path = tmp_path / 'empty.pkl'
    dump([], path)
    with pytest.raises(ValueError, match='empty.pkl: expected a non-empty'):
        sel.load_predictions(str(path))
    unlabelled = [DataSample().set_pred_score(torch.ones(3) / 3)]
    dump(unlabelled, tmp_path / 'nolabel.pkl')
    with pytest.raises(ValueError, match=r"sample 0 has no \['gt_label'\]"):
        sel.load_predictions(str(tmp_path / 'nolabel.pkl'))
    head = lgr_head(0.2, 0.0)
    head.set_anchors(torch.randn(5, 3, 8))
    samples = head.predict((torch.randn(2, 8), ),
                           [DataSample().set_gt_label(k) for k in (0, 1)])
    del samples[1].pred_score_text
    dump(samples, tmp_path / 'mixed.pkl')
    with pytest.raises(ValueError,
                       match=r"sample 1 has no \['pred_score_text'\]"):
        sel.load_predictions(str(tmp_path / 'mixed.pkl'))
