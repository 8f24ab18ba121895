"""Post-hoc logit adjustment (Menon et al., ICLR 2021, Eq. 9) in the heads,
and a synthetic long-tailed problem where it has to help."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmpretrain.models.heads import LinearClsHead
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

import vlltr_mm  # noqa: F401  (registers the heads)
from vlltr_mm.models.heads import LGRHead, LogitAdjustedLinearClsHead
from vlltr_mm.models.losses import LogitAdjustedLoss

C, D, M, B = 5, 8, 3, 6
COUNTS = [400, 120, 30, 9, 2]
TAUS = [0.5, 1.0, 2.0]


def log_prior(counts=COUNTS):
    n = torch.tensor(counts, dtype=torch.float64)
    return (n / n.sum()).log()


def feats(dtype=torch.float64, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(B, D, generator=g, dtype=dtype)


def linear_heads(tau, counts=COUNTS):
    """Stock LinearClsHead and ours with the same (random) weights."""
    torch.manual_seed(0)
    stock = LinearClsHead(C, D).double()
    ours = MODELS.build(
        dict(type='LogitAdjustedLinearClsHead', num_classes=C,
             in_channels=D, posthoc_tau=tau, class_counts=counts)).double()
    with torch.no_grad():
        stock.fc.weight.normal_(0, 1.0)
        stock.fc.bias.normal_(0, 1.0)
    ours.fc.load_state_dict(stock.fc.state_dict())
    return stock, ours


def scores_of(samples):
    return torch.stack([s.pred_score for s in samples])


def labels_of(samples):
    return torch.cat([s.pred_label for s in samples])


@pytest.mark.parametrize('tau', TAUS)
def test_linear_head_predictions(tau):
    stock, ours = linear_heads(tau)
    assert isinstance(ours, LogitAdjustedLinearClsHead)
    x = feats()
    logits = stock((x, ))
    adjusted = logits - tau * log_prior()
    out = ours.predict((x, ))
    torch.testing.assert_close(scores_of(out), adjusted.softmax(1),
                               rtol=1e-12, atol=0)
    assert labels_of(out).tolist() == adjusted.argmax(1).tolist()
    # The adjustment must change some prediction here, towards the tail.
    plain = logits.argmax(1)
    changed = labels_of(out) != plain
    assert changed.any()
    assert (labels_of(out)[changed] > plain[changed]).all()
    # Given samples are filled in, as LinearClsHead does.
    given = [DataSample().set_gt_label(0) for _ in range(B)]
    out = ours.predict((x, ), given)
    assert out[0] is given[0] and 'gt_label' in out[0]
    # Training is untouched: the same loss as the stock head.
    torch.testing.assert_close(ours.loss((x, ), given),
                               stock.loss((x, ), given))


def test_linear_head_tau_zero_equals_stock():
    stock, ours = linear_heads(0.0, counts=None)  # no prior needed
    x = feats()
    ref, out = stock.predict((x, )), ours.predict((x, ))
    assert torch.equal(scores_of(out), scores_of(ref))
    assert torch.equal(labels_of(out), labels_of(ref))


def test_linear_head_prior_errors_and_checkpoint():
    _, ours = linear_heads(1.0, counts=None)
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        ours.predict((feats(), ))
    ours.set_class_counts(COUNTS)
    assert not ours.class_prior.explicit
    expect = scores_of(ours.predict((feats(), )))
    # tools/test.py builds the head without counts and loads them.
    fresh = LogitAdjustedLinearClsHead(C, D, posthoc_tau=1.0).double()
    fresh.load_state_dict(ours.state_dict())
    assert fresh.class_prior.counts.tolist() == COUNTS
    torch.testing.assert_close(scores_of(fresh.predict((feats(), ))),
                               expect, rtol=0, atol=0)
    with pytest.raises(ValueError, match='has 5 entries but the model has 4'):
        LogitAdjustedLinearClsHead(4, D, class_counts=COUNTS)
    with pytest.raises(ValueError, match='posthoc_tau must be >= 0'):
        LogitAdjustedLinearClsHead(C, D, posthoc_tau=-1.0)


# LGRHead


def lgr_head(**kwargs):
    """An LGRHead with anchors set and non-trivial image logits."""
    torch.manual_seed(0)
    head = LGRHead(C, D, num_anchors=M, identity_init=False, **kwargs)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if name.startswith('mlp') or 'attn_' in name:
                p.add_(0.5 * torch.randn_like(p))
    head = head.double()
    g = torch.Generator().manual_seed(3)
    anchors = torch.randn(C, M, D, generator=g, dtype=torch.float64)
    head.set_anchors(anchors, logit_scale=10.0)
    return head


def predicted(head, x):
    out = head.predict((x, ))
    return (scores_of(out),
            torch.stack([s.pred_score_image for s in out]),
            torch.stack([s.pred_score_text for s in out]), labels_of(out))


@pytest.mark.parametrize('tau', TAUS)
@pytest.mark.parametrize('alpha', [0.5, 0.3])
def test_lgr_head_image_target(tau, alpha):
    head = lgr_head(posthoc_tau=tau, posthoc_target='image',
                    class_counts=COUNTS, alpha=alpha)
    x = feats()
    l_img, l_txt = head.branch_logits((x, ))
    p_img = (l_img - tau * log_prior()).softmax(1)
    p_txt = l_txt.softmax(1)
    fused = alpha * p_img + (1 - alpha) * p_txt
    score, s_img, s_txt, label = predicted(head, x)
    torch.testing.assert_close(score, fused, rtol=1e-12, atol=0)
    torch.testing.assert_close(s_img, p_img, rtol=1e-12, atol=0)
    torch.testing.assert_close(s_txt, p_txt, rtol=1e-12, atol=0)
    assert label.tolist() == fused.argmax(1).tolist()
    torch.testing.assert_close(head((x, )), fused, rtol=1e-12, atol=0)


@pytest.mark.parametrize('tau', TAUS)
def test_lgr_head_fused_target(tau):
    head = lgr_head(posthoc_tau=tau, posthoc_target='fused',
                    class_counts=COUNTS)
    x = feats()
    l_img, l_txt = head.branch_logits((x, ))
    p_img, p_txt = l_img.softmax(1), l_txt.softmax(1)
    fused = 0.5 * p_img + 0.5 * p_txt
    adjusted = (fused.log() - tau * log_prior()).softmax(1)
    score, s_img, s_txt, label = predicted(head, x)
    torch.testing.assert_close(score, adjusted, rtol=1e-12, atol=0)
    # The branch scores stay unadjusted.
    torch.testing.assert_close(s_img, p_img, rtol=1e-12, atol=0)
    torch.testing.assert_close(s_txt, p_txt, rtol=1e-12, atol=0)
    assert label.tolist() == adjusted.argmax(1).tolist()
    # Equivalently: fused / pi^tau, renormalised.
    ratio = fused / log_prior().exp() ** tau
    torch.testing.assert_close(score, ratio / ratio.sum(1, keepdim=True),
                               rtol=1e-10, atol=0)


@pytest.mark.parametrize('target', ['image', 'fused'])
def test_lgr_head_tau_zero_and_errors(target):
    plain = lgr_head()
    x = feats()
    ref = predicted(plain, x)
    for counts in (None, COUNTS):
        head = lgr_head(posthoc_tau=0.0, posthoc_target=target,
                        class_counts=counts)
        head.load_state_dict(plain.state_dict())
        for a, b in zip(predicted(head, x), ref):
            assert torch.equal(a, b)
    # The loss never sees the adjustment.
    adjusted = lgr_head(posthoc_tau=1.0, posthoc_target=target,
                        class_counts=COUNTS)
    given = [DataSample().set_gt_label(i % C) for i in range(B)]
    torch.testing.assert_close(adjusted.loss((x, ), given),
                               plain.loss((x, ), given))
    unset = lgr_head(posthoc_tau=1.0, posthoc_target=target)
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        unset.predict((x, ))
    unset.set_class_counts(COUNTS)
    for a, b in zip(predicted(unset, x), predicted(adjusted, x)):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    with pytest.raises(ValueError, match='posthoc_target must be'):
        LGRHead(C, D, num_anchors=M, posthoc_target='text')
    with pytest.raises(ValueError, match='posthoc_tau must be >= 0'):
        LGRHead(C, D, num_anchors=M, posthoc_tau=-0.1)


# A synthetic long-tailed problem.

TRAIN_COUNTS = (500, 160, 50, 16, 5)
DIM = 5


def gaussians(seed=3, per_test_class=1000):
    """Unit-variance Gaussians around random means; a long-tailed train
    set and a balanced test set."""
    g = torch.Generator().manual_seed(seed)
    means = 1.5 * torch.randn(len(TRAIN_COUNTS), DIM, generator=g,
                              dtype=torch.float64)

    def draw(counts):
        x = torch.cat([
            means[c] + torch.randn(n, DIM, generator=g, dtype=torch.float64)
            for c, n in enumerate(counts)
        ])
        y = torch.cat(
            [torch.full((n, ), c) for c, n in enumerate(counts)])
        return x, y

    return draw(TRAIN_COUNTS), draw([per_test_class] * len(TRAIN_COUNTS))


def train_head(x, y, loss):
    """A LinearClsHead-like fc trained full-batch with Adam."""
    torch.manual_seed(0)
    head = LogitAdjustedLinearClsHead(
        len(TRAIN_COUNTS), DIM, posthoc_tau=0.0).double()
    opt = torch.optim.Adam(head.fc.parameters(), lr=0.05)
    for _ in range(300):
        opt.zero_grad()
        loss(head.fc(x), y).backward()
        opt.step()
    return head


def balanced_accuracy(head, x, y, tau=0.0):
    head.posthoc_tau = tau
    with torch.no_grad():
        pred = labels_of(head.predict((x, )))
    return 100 * np.mean([(pred[y == c] == c).double().mean().item()
                          for c in range(len(TRAIN_COUNTS))])


def test_synthetic_long_tail():
    (x, y), (x_test, y_test) = gaussians()
    ce = train_head(x, y, F.cross_entropy)
    ce.set_class_counts(list(TRAIN_COUNTS))
    acc_ce = balanced_accuracy(ce, x_test, y_test)
    acc_posthoc = balanced_accuracy(ce, x_test, y_test, tau=1.0)
    # Sign-flipped: the prior added instead of subtracted.
    with torch.no_grad():
        flipped = ce.fc(x_test) + log_prior(TRAIN_COUNTS)
    acc_flipped = 100 * np.mean([
        (flipped.argmax(1)[y_test == c] == c).double().mean().item()
        for c in range(len(TRAIN_COUNTS))
    ])
    la = train_head(x, y,
                    LogitAdjustedLoss(tau=1.0,
                                      class_counts=list(TRAIN_COUNTS)))
    acc_la = balanced_accuracy(la, x_test, y_test)
    # Measured (seed 3): CE 66.3, post-hoc 80.0, flipped 46.2, LA loss
    # 78.3 (%). Over data seeds 0-9 post-hoc gained 3.1-13.8 points, the
    # LA loss 1.6-12.6, and the flipped sign lost 13.4-20.1. With seed 3
    # every measured margin is >= 12 points, against the 8 asserted.
    print(f'balanced accuracy: CE {acc_ce:.1f}, post-hoc {acc_posthoc:.1f},'
          f' flipped {acc_flipped:.1f}, LA loss {acc_la:.1f}')
    assert acc_posthoc >= acc_ce + 8
    assert acc_flipped <= acc_ce - 8
    assert acc_la >= acc_ce + 8
