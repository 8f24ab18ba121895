"""LogitAdjustedLoss / BalancedSoftmaxLoss against hand-written formulas."""
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from mmengine.runner.checkpoint import load_state_dict
from mmpretrain.models.losses import CrossEntropyLoss, LabelSmoothLoss
from mmpretrain.registry import MODELS

import vlltr_mm  # noqa: F401  (registers the losses)
from vlltr_mm.models.losses import BalancedSoftmaxLoss, LogitAdjustedLoss
from vlltr_mm.models.utils.class_prior import ClassPrior, check_class_counts

N, C = 5, 4
COUNTS = [60, 25, 10, 5]
TAUS = [0.0, 0.5, 1.0, 2.0]


def inputs(dtype=torch.float64, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(N, C, generator=g, dtype=dtype) * 2
    hard = torch.tensor([0, 3, 1, 3, 2])
    soft = torch.rand(N, C, generator=g, dtype=dtype)
    soft = soft / soft.sum(1, keepdim=True)  # e.g. a Mixup target
    weight = torch.tensor([1.0, 0.5, 2.0, 0.0, 1.5], dtype=dtype)
    return logits, hard, soft, weight


def log_prior(counts=COUNTS):
    n = np.asarray(counts, dtype=np.float64)
    return torch.from_numpy(np.log(n / n.sum()))


def targets(label, eps=0.0):
    """Dense [N, C] float64 target, label-smoothed by hand."""
    if label.dim() == 1:
        y = torch.zeros(N, C, dtype=torch.float64)
        y[torch.arange(N), label] = 1.0
    else:
        y = label.double()
    return (1 - eps) * y + eps / C


def reference(logits, label, tau, eps=0.0):
    """Per-sample ``-sum_c y_c log softmax(z + tau * log pi)_c`` [N]."""
    y = targets(label, eps)
    z = logits.double() + tau * log_prior()
    log_p = z - torch.logsumexp(z, dim=1, keepdim=True)
    return -(y * log_p).sum(1)


@pytest.mark.parametrize('tau', TAUS)
@pytest.mark.parametrize('kind', ['hard', 'soft'])
@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_matches_formula(tau, kind, eps):
    logits, hard, soft, weight = inputs()
    label = hard if kind == 'hard' else soft
    ref = reference(logits, label, tau, eps)  # [N]
    loss = LogitAdjustedLoss(
        tau=tau, class_counts=COUNTS, label_smooth_val=eps,
        reduction='none')
    torch.testing.assert_close(loss(logits, label), ref, rtol=1e-12,
                               atol=0)
    for reduction, expect in (('mean', ref.mean()), ('sum', ref.sum())):
        out = loss(logits, label, reduction_override=reduction)
        assert out.dim() == 0
        torch.testing.assert_close(out, expect, rtol=1e-12, atol=0)
    # Per-sample weights, an avg_factor and loss_weight.
    loss = LogitAdjustedLoss(
        tau=tau, class_counts=COUNTS, label_smooth_val=eps, loss_weight=0.3)
    torch.testing.assert_close(
        loss(logits, label, weight=weight), 0.3 * (weight * ref).mean(),
        rtol=1e-12, atol=0)
    torch.testing.assert_close(
        loss(logits, label, weight=weight, avg_factor=7.0),
        0.3 * (weight * ref).sum() / 7.0, rtol=1e-12, atol=0)
    torch.testing.assert_close(
        loss(logits, label, avg_factor=N), 0.3 * ref.mean(), rtol=1e-12,
        atol=0)
    torch.testing.assert_close(
        loss(logits, label, weight=weight, reduction_override='sum'),
        0.3 * (weight * ref).sum(), rtol=1e-12, atol=0)


@pytest.mark.parametrize('tau', TAUS)
@pytest.mark.parametrize('kind', ['hard', 'soft'])
@pytest.mark.parametrize('reduction', ['mean', 'sum'])
def test_gradient_closed_form(tau, kind, reduction):
    logits, hard, soft, _ = inputs()
    label = hard if kind == 'hard' else soft
    eps = 0.2
    loss = LogitAdjustedLoss(
        tau=tau, class_counts=COUNTS, label_smooth_val=eps,
        reduction=reduction)
    z = logits.clone().requires_grad_()
    loss(z, label).backward()
    # d/dz of -sum y log softmax(z + b) is softmax(z + b) - y per sample
    # (the targets sum to 1), divided by N for the mean.
    expect = (logits + tau * log_prior()).softmax(1) - targets(label, eps)
    if reduction == 'mean':
        expect = expect / N
    torch.testing.assert_close(z.grad, expect, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize('kind', ['hard', 'soft'])
def test_gradcheck(kind):
    logits, hard, soft, weight = inputs()
    label = hard if kind == 'hard' else soft
    loss = LogitAdjustedLoss(
        tau=1.5, class_counts=COUNTS, label_smooth_val=0.1)
    z = logits.clone().requires_grad_()
    assert torch.autograd.gradcheck(
        lambda x: loss(x, label, weight=weight), (z, ))


def test_tau_zero_is_cross_entropy():
    logits, hard, soft, weight = inputs()
    # No prior needed when tau = 0.
    loss = LogitAdjustedLoss(tau=0.0)
    torch.testing.assert_close(
        loss(logits, hard), F.cross_entropy(logits, hard), rtol=1e-12,
        atol=0)
    torch.testing.assert_close(
        loss(logits, soft), F.cross_entropy(logits, soft), rtol=1e-12,
        atol=0)
    ce = CrossEntropyLoss(loss_weight=0.7)
    ours = LogitAdjustedLoss(tau=0.0, loss_weight=0.7)
    for kwargs in (dict(), dict(weight=weight), dict(avg_factor=3.0),
                   dict(reduction_override='sum')):
        torch.testing.assert_close(
            ours(logits, hard, **kwargs), ce(logits, hard, **kwargs),
            rtol=1e-12, atol=0)
    soft_ce = CrossEntropyLoss(use_soft=True)
    torch.testing.assert_close(
        LogitAdjustedLoss(tau=0.0)(logits, soft), soft_ce(logits, soft),
        rtol=1e-12, atol=0)
    # Label smoothing as MMPretrain's LabelSmoothLoss(mode='original')
    # (which builds its smoothed one-hot target in float32).
    smooth = LabelSmoothLoss(label_smooth_val=0.1, mode='original')
    ours = LogitAdjustedLoss(tau=0.0, label_smooth_val=0.1)
    for kwargs in (dict(), dict(weight=weight), dict(avg_factor=3.0)):
        torch.testing.assert_close(
            ours(logits, hard, **kwargs), smooth(logits, hard, **kwargs),
            rtol=1e-6, atol=0)
    torch.testing.assert_close(
        F.cross_entropy(logits, hard, label_smoothing=0.1),
        ours(logits, hard), rtol=1e-12, atol=0)


def test_balanced_softmax_and_registry():
    logits, hard, soft, _ = inputs()
    bs = MODELS.build(
        dict(type='BalancedSoftmaxLoss', class_counts=COUNTS,
             label_smooth_val=0.05))
    assert isinstance(bs, BalancedSoftmaxLoss) and bs.tau == 1.0
    la = MODELS.build(
        dict(type='LogitAdjustedLoss', tau=1.0, class_counts=COUNTS,
             label_smooth_val=0.05))
    for label in (hard, soft):
        torch.testing.assert_close(bs(logits, label), la(logits, label),
                                   rtol=0, atol=0)
    # Balanced softmax is cross-entropy on logits + log(n): the shift by
    # log(sum n) cancels in the softmax.
    n = torch.tensor(COUNTS, dtype=torch.float64)
    torch.testing.assert_close(
        bs(logits, hard),
        F.cross_entropy(logits + n.log(), hard, label_smoothing=0.05),
        rtol=1e-12, atol=0)
    with pytest.raises(TypeError, match='fixes tau = 1'):
        BalancedSoftmaxLoss(tau=0.5, class_counts=COUNTS)
    with pytest.raises(TypeError, match='fixes tau = 1'):
        MODELS.build(dict(type='BalancedSoftmaxLoss', tau=1.0))


def test_float32_and_gradient_direction():
    logits, hard, _, _ = inputs(torch.float32)
    loss = LogitAdjustedLoss(tau=1.0, class_counts=COUNTS)
    out = loss(logits, hard)
    assert out.dtype == torch.float32
    torch.testing.assert_close(
        out.double(), reference(logits, hard, 1.0).mean(), rtol=1e-6,
        atol=0)
    # Eq. 10 asks a rare class to win by the larger margin
    # log(pi_j / pi_y): at equal logits the gradient pushes the true logit
    # of a tail-class sample up harder than plain CE does, and that of a
    # head-class sample less.
    z = torch.zeros(2, C, requires_grad=True)
    label = torch.tensor([0, C - 1])
    loss(z, label, reduction_override='sum').backward()
    plain = torch.zeros(2, C, requires_grad=True)
    F.cross_entropy(plain, label, reduction='sum').backward()
    assert plain.grad[0, 0] < z.grad[0, 0] < 0  # head: pushed up less
    assert z.grad[1, C - 1] < plain.grad[1, C - 1] < 0  # tail: more


def test_unset_prior():
    logits, hard, _, _ = inputs()
    loss = LogitAdjustedLoss(tau=1.0)
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        loss(logits, hard)
    with pytest.raises(RuntimeError, match='ClassPriorHook'):
        BalancedSoftmaxLoss()(logits, hard)
    loss.set_class_counts(COUNTS)
    torch.testing.assert_close(loss(logits, hard),
                               reference(logits, hard, 1.0).mean())
    assert not loss.class_prior.explicit


@pytest.mark.parametrize('counts,match', [
    ([10, -1, 3, 4], 'non-negative integer'),
    ([[10, 1], [3, 4]], 'non-negative integer'),
    ([], 'non-negative integer'),
    ([1.5, 2, 3, 4], 'non-negative integer'),
    ([1, float('nan'), 3, 4], 'non-negative integer'),
    (['a', 'b', 'c', 'd'], 'non-negative integer'),
    ([0, 0, 0, 0], 'all zero'),
    ([10, 5, 1], 'has 3 entries but the model has 4'),
])
def test_bad_counts(counts, match):
    with pytest.raises(ValueError, match=match):
        LogitAdjustedLoss(class_counts=counts, num_classes=C)
    loss = LogitAdjustedLoss(num_classes=C)
    with pytest.raises(ValueError, match=match):
        loss.set_class_counts(counts)
    assert not loss.class_prior.is_set


def test_bad_arguments():
    with pytest.raises(ValueError, match='tau must be >= 0'):
        LogitAdjustedLoss(tau=-0.5)
    with pytest.raises(ValueError, match='tau must be >= 0'):
        LogitAdjustedLoss(tau=float('nan'))
    with pytest.raises(ValueError, match='label_smooth_val'):
        LogitAdjustedLoss(label_smooth_val=1.0)
    with pytest.raises(ValueError, match='reduction must be'):
        LogitAdjustedLoss(reduction='avg')


def test_counts_accepted_types():
    for counts in (COUNTS, np.array(COUNTS, dtype=np.int32),
                   torch.tensor(COUNTS), np.array(COUNTS, dtype=float)):
        arr = check_class_counts(counts, C)
        assert arr.dtype == np.int64 and arr.tolist() == COUNTS
    prior = ClassPrior(np.array(COUNTS), num_classes=C)
    assert prior.counts.dtype == torch.int64 and prior.explicit
    torch.testing.assert_close(prior.log_prior(torch.float64), log_prior(),
                               rtol=1e-15, atol=0)
    assert prior.log_prior().dtype == torch.float32


def test_state_dict_round_trip(tmp_path):
    logits, hard, _, _ = inputs()
    trained = LogitAdjustedLoss(tau=0.5, num_classes=C)
    trained.set_class_counts(COUNTS)
    state = trained.state_dict()
    assert state['class_prior.counts'].dtype == torch.int64
    torch.save(state, tmp_path / 'loss.pth')
    state = torch.load(tmp_path / 'loss.pth', weights_only=True)

    # A loss built without counts (as tools/test.py builds it) takes the
    # checkpoint's, strict or not.
    for strict in (True, False):
        fresh = LogitAdjustedLoss(tau=0.5, num_classes=C)
        result = fresh.load_state_dict(state, strict=strict)
        assert not result.missing_keys and not result.unexpected_keys
        assert fresh.class_prior.counts.tolist() == COUNTS
        torch.testing.assert_close(fresh(logits, hard),
                                   trained(logits, hard), rtol=0, atol=0)
    # Without num_classes any length loads; with it, a mismatch raises.
    fresh = LogitAdjustedLoss(tau=0.5)
    fresh.load_state_dict(state)
    assert fresh.class_prior.counts.tolist() == COUNTS
    with pytest.raises(RuntimeError, match='size mismatch for '
                       'class_prior.counts'):
        LogitAdjustedLoss(num_classes=3).load_state_dict(state)
    # MMEngine's non-strict load (load_from of a checkpoint with another
    # number of classes) warns and keeps the model's counts, as it does
    # for mismatched classifier weights.
    other = LogitAdjustedLoss(class_counts=[1, 2, 3], num_classes=3)
    load_state_dict(other, state, strict=False)
    assert other.class_prior.counts.tolist() == [1, 2, 3]
    with pytest.raises(RuntimeError, match='size mismatch'):
        load_state_dict(other, state, strict=True)
    # A state dict saved before the counts were set loads as unset.
    empty = LogitAdjustedLoss(num_classes=C).state_dict()
    fresh = LogitAdjustedLoss(class_counts=COUNTS, num_classes=C)
    fresh.load_state_dict(empty)
    assert not fresh.class_prior.is_set


def test_zero_count_class():
    logits, hard, _, _ = inputs()
    counts = [60, 0, 10, 5]
    with pytest.warns(UserWarning, match='1 classes have no training'):
        loss = LogitAdjustedLoss(tau=1.0, class_counts=counts)
    assert loss.class_prior.counts.tolist() == counts  # stored as given
    out = loss(logits, hard)
    assert torch.isfinite(out)
    # The empty class is taken as one image.
    n = torch.tensor([60.0, 1.0, 10.0, 5.0], dtype=torch.float64)
    torch.testing.assert_close(
        out, F.cross_entropy(logits + (n / n.sum()).log(), hard),
        rtol=1e-12, atol=0)
    z = logits.clone().requires_grad_()
    loss(z, hard).backward()
    assert torch.isfinite(z.grad).all()
    with warnings.catch_warnings():
        warnings.simplefilter('error')
        LogitAdjustedLoss(class_counts=COUNTS)  # no warning without zeros
