import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.optim import OptimWrapper
from mmpretrain.registry import MODELS
from mmpretrain.structures import DataSample

from vlltr_mm.models.heads import LGRHead
from vlltr_mm.models.heads.lgr_attention import (
    _AnchorAttention,
    anchor_statistics,
    direct_cosine,
    efficient_cosine,
)

C, M, D, B = 7, 5, 16, 6


def make_anchors(offset=0.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    anchors = torch.randn(C, M, D, generator=g) + offset
    mask = torch.rand(C, M, generator=g) > 0.4
    mask[:, 0] = True
    mask[3] = False  # a class with a single valid anchor
    mask[3, 2] = True
    return anchors, mask


class DirectLGRHead(LGRHead):
    """The reference: Eqs. 5-7 computed literally (forms K and G)."""

    def text_cosine(self, x, query):
        return direct_cosine(x, query, self.anchors, self.anchor_mask,
                             self.attn_proj_k, self.attn_norm_k,
                             detach_norm=self.detach_text_norm)


def make_head(impl='efficient', dtype=torch.float32, anchors=None, **kwargs):
    """A head with random (non-identity) projections and LayerNorms."""
    torch.manual_seed(0)
    kwargs.setdefault('qk_bias', True)
    kwargs.setdefault('learnable_scale', True)
    cls = DirectLGRHead if impl == 'direct' else LGRHead
    head = cls(C, D, num_anchors=M, identity_init=False, **kwargs)
    with torch.no_grad():
        for name, p in head.named_parameters():
            if 'attn_' in name:
                p.add_(0.3 * torch.randn_like(p))
    head = head.to(dtype)
    if anchors is None:
        anchors = make_anchors()
    head.set_anchors(anchors[0].to(dtype), anchors[1], logit_scale=20.0)
    return head


def samples(labels=None, scores=None):
    out = []
    for i in range(B):
        s = DataSample()
        if labels is not None:
            s.set_gt_label(int(labels[i]))
        if scores is not None:
            s.set_gt_score(scores[i])
        out.append(s)
    return out


def run_step(head, x, data_samples):
    x = x.clone().requires_grad_()
    losses = head.loss((x, ), data_samples)
    total = losses['loss_image'] + losses['loss_text']
    total.backward()
    grads = {n: p.grad.clone() for n, p in head.named_parameters()}
    grads['input'] = x.grad.clone()
    logits = head.branch_logits((x.detach(), ))
    return logits, losses, grads


def assert_rel(actual, expected, tol):
    err = (actual - expected).abs().max().item()
    assert err <= tol * expected.abs().max().item(), err


@pytest.mark.parametrize('dtype,tol', [(torch.float32, 1e-5),
                                       (torch.float64, 1e-12)])
@pytest.mark.parametrize('class_chunk', [None, 3])
@pytest.mark.parametrize('offset', [0.0, 4.0])
@pytest.mark.parametrize('detach', [False, True])
def test_efficient_matches_direct(dtype, tol, class_chunk, offset, detach):
    # With detach, the direct form divides G by G.norm().detach(), the
    # authors' v_detach; every gradient must match it.
    anchors = make_anchors(offset)
    ref = make_head('direct', dtype, anchors, detach_text_norm=detach)
    eff = make_head('efficient', dtype, anchors, class_chunk=class_chunk,
                    detach_text_norm=detach)
    x = torch.randn(B, D, dtype=dtype)
    labels = torch.randint(0, C, (B, ))
    (ri, rt), rl, rg = run_step(ref, x, samples(labels))
    (ei, et), el, eg = run_step(eff, x, samples(labels))
    assert_rel(et, rt, tol)
    assert torch.equal(ei, ri)
    for key in rl:
        assert_rel(el[key], rl[key], tol)
    # beta_k and b_k only add one number per image to every key score,
    # which softmax over M cancels: their true gradient is zero, and both
    # forms return rounding noise far below the other gradients.
    zero = ('attn_norm_k.bias', 'attn_proj_k.bias')
    for name in rg:
        if name in zero:
            bound = tol * rg['attn_proj_k.weight'].abs().max()
            assert rg[name].abs().max() <= bound
            assert eg[name].abs().max() <= bound
        else:
            assert rg[name].abs().max() > 0, name
            assert_rel(eg[name], rg[name], tol)


def test_efficient_cosine_gradcheck():
    torch.manual_seed(1)
    anchors = torch.randn(3, 4, 5, dtype=torch.float64)
    mask = torch.tensor([[1, 1, 0, 1], [1, 0, 0, 0], [1, 1, 1, 1]]).bool()
    anchors[~mask] = 0
    stats = anchor_statistics(anchors, 1e-5)
    x = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    h = torch.randn(2, 5, dtype=torch.float64, requires_grad=True)
    shift = torch.randn(2, dtype=torch.float64, requires_grad=True)
    for chunk in (None, 2):
        assert torch.autograd.gradcheck(
            lambda x, h, s: efficient_cosine(x, h, s, anchors, mask, stats,
                                             chunk), (x, h, shift))
        # Each output alone: the other one's gradient arrives as None.
        for out in (0, 1):
            assert torch.autograd.gradcheck(
                lambda x, h, s: _AnchorAttention.apply(
                    h, x, s, anchors, mask, stats['scale'], stats['offset'],
                    stats['gram'], chunk or 3, True)[out], (x, h, shift))


@pytest.mark.parametrize('class_chunk', [None, 3])
def test_detach_text_norm_changes_only_the_gradient(class_chunk):
    dtype = torch.float64
    x = torch.randn(B, D, dtype=dtype)
    labels = torch.randint(0, C, (B, ))
    runs = [
        run_step(
            make_head('efficient', dtype, class_chunk=class_chunk,
                      detach_text_norm=detach), x, samples(labels))
        for detach in (False, True)
    ]
    (pi, pt), pl, pg = runs[0]
    (di, dt), dl, dg = runs[1]
    assert torch.equal(di, pi)
    assert_rel(dt, pt, 1e-14)
    assert dl['loss_text'].item() == pytest.approx(pl['loss_text'].item(),
                                                   1e-12)
    # The image branch does not see the text norm; the text branch's
    # parameters and the image embedding get another gradient.
    for name in ('mlp.0.weight', 'mlp.2.bias'):
        torch.testing.assert_close(dg[name], pg[name], rtol=1e-12, atol=0)
    for name in ('input', 'attn_proj_q.weight', 'attn_proj_k.weight',
                 'attn_norm_q.weight', 'attn_norm_k.weight'):
        diff = (dg[name] - pg[name]).abs().max()
        assert diff > 1e-3 * pg[name].abs().max(), name


def test_backward_twice_with_retain_graph():
    head = make_head()
    x = torch.randn(B, D, requires_grad=True)
    logits = head.branch_logits((x, ))[1].sum()
    first = torch.autograd.grad(logits, x, retain_graph=True)[0]
    torch.testing.assert_close(torch.autograd.grad(logits, x)[0], first)


@pytest.mark.parametrize('impl', ['efficient', 'direct'])
def test_soft_labels_and_label_smoothing(impl):
    x = torch.randn(B, D)
    g = torch.Generator().manual_seed(3)
    target = torch.rand(B, C, generator=g).softmax(-1)
    for loss in (dict(type='CrossEntropyLoss', use_soft=True),
                 dict(type='CrossEntropyLoss')):
        head = make_head(impl, loss=loss)
        losses = head.loss((x, ), samples(scores=target))
        li, lt = head.branch_logits((x, ))
        for key, logits in (('loss_image', li), ('loss_text', lt)):
            expected = -(target * logits.log_softmax(-1)).sum(-1).mean()
            torch.testing.assert_close(losses[key], expected)
    labels = torch.randint(0, C, (B, ), generator=g)
    head = make_head(impl, loss=dict(type='LabelSmoothLoss',
                                     label_smooth_val=0.1, num_classes=C))
    # Label smoothing on hard labels and on Mixup-style soft targets.
    for target, data in ((F.one_hot(labels, C), samples(labels)),
                         (target, samples(scores=target))):
        losses = head.loss((x, ), data)
        smooth = target * 0.9 + 0.1 / C
        for key, logits in zip(('loss_image', 'loss_text'),
                               head.branch_logits((x, ))):
            expected = -(smooth * logits.log_softmax(-1)).sum(-1).mean()
            torch.testing.assert_close(losses[key], expected)


def test_cal_acc():
    head = make_head(cal_acc=True, topk=(1, 2))
    x = torch.randn(B, D)
    labels = head((x, )).argmax(-1)
    losses = head.loss((x, ), samples(labels))
    # Same layout as mmpretrain's ClsHead: one list per k.
    torch.testing.assert_close(losses['accuracy_top-1'][0],
                               torch.tensor([100.0]))
    assert 'accuracy_top-2' in losses
    with pytest.raises(ValueError, match='cal_acc needs hard labels'):
        head.loss((x, ), samples(scores=torch.full((B, C), 1 / C)))


def test_fusion_by_hand():
    logits_image = torch.tensor([[0.0, math.log(3.0)]])
    logits_text = torch.tensor([[math.log(4.0), 0.0]])
    # softmax: image [0.25, 0.75], text [0.8, 0.2]
    head = LGRHead(2, 4, num_anchors=1)
    torch.testing.assert_close(
        head.fuse(logits_image, logits_text), torch.tensor([[0.525,
                                                             0.475]]))
    head = LGRHead(2, 4, num_anchors=1, alpha=0.2)
    torch.testing.assert_close(
        head.fuse(logits_image, logits_text), torch.tensor([[0.69, 0.31]]))


@pytest.mark.parametrize('alpha', [0.5, 0.7])
def test_predict_fields(alpha):
    head = make_head(alpha=alpha)
    x = torch.randn(B, D)
    li, lt = head.branch_logits((x, ))
    out = head.predict((x, ), samples(labels=torch.zeros(B)))
    scores = torch.stack([s.pred_score for s in out])
    torch.testing.assert_close(
        scores, alpha * li.softmax(-1) + (1 - alpha) * lt.softmax(-1))
    torch.testing.assert_close(scores, head((x, )))
    torch.testing.assert_close(scores.sum(-1), torch.ones(B))
    for s, li_row, lt_row in zip(out, li, lt):
        assert s.pred_label.item() == s.pred_score.argmax().item()
        assert s.pred_label_logit_sum.tolist() == [
            (li_row + lt_row).argmax().item()]
        torch.testing.assert_close(s.pred_score_image, li_row.softmax(-1))
        torch.testing.assert_close(s.pred_score_text, lt_row.softmax(-1))
    assert len(head.predict((x, ))) == B


@pytest.mark.parametrize('target', ['image', 'fused'])
def test_logit_sum_label_ignores_posthoc_adjustment(target):
    x = torch.randn(B, D)
    counts = [1000, 500, 100, 50, 10, 5, 1]
    plain = make_head(class_counts=counts)
    adjusted = make_head(class_counts=counts, posthoc_tau=2.0,
                         posthoc_target=target)
    li, lt = plain.branch_logits((x, ))
    out = adjusted.predict((x, ))
    assert torch.cat([s.pred_label_logit_sum for s in out]).tolist() == (
        li + lt).argmax(-1).tolist()
    # The adjustment did act on the fused score.
    assert not torch.allclose(
        torch.stack([s.pred_score for s in out]), plain((x, )))


def test_state_dict_round_trip(tmp_path):
    src = make_head(learnable_scale=False)
    x = torch.randn(B, D)
    expected = src((x, ))
    torch.save(src.state_dict(), tmp_path / 'head.pth')
    state = torch.load(tmp_path / 'head.pth', weights_only=True)
    assert {'anchors', 'anchor_mask', 'anchors_set', 'log_scale'} <= set(
        state)
    # A head that already cached statistics of other anchors must rebuild.
    dst = make_head(learnable_scale=False,
                    anchors=make_anchors(offset=1.0, seed=5))
    dst.set_anchors(*make_anchors(seed=5), logit_scale=3.0)
    dst((x, ))
    dst.load_state_dict(state)
    assert dst.has_anchors
    assert torch.equal(dst.anchor_mask, src.anchor_mask)
    torch.testing.assert_close(dst.logit_scale, torch.tensor(20.0))
    torch.testing.assert_close(dst((x, )), expected)
    fresh = LGRHead(C, D, num_anchors=M, qk_bias=True)
    assert not fresh.has_anchors
    fresh.load_state_dict(state)
    assert fresh.has_anchors


def test_masked_anchor_rows_are_ignored():
    anchors, mask = make_anchors()
    head = make_head(anchors=(anchors, mask))
    x = torch.randn(B, D)
    expected = head((x, ))
    garbage = anchors.clone()
    garbage[~mask] = 1e3
    head.set_anchors(garbage, mask)
    assert head.anchors[~mask].abs().max() == 0
    torch.testing.assert_close(head((x, )), expected)


def test_no_anchors_error():
    head = LGRHead(C, D, num_anchors=M)
    x = (torch.randn(B, D), )
    match = 'AnchorSentenceSelectionHook.*checkpoint'
    with pytest.raises(RuntimeError, match=match):
        head.loss(x, samples(labels=torch.zeros(B)))
    with pytest.raises(RuntimeError, match=match):
        head.predict(x)


def test_bad_arguments():
    head = LGRHead(C, D, num_anchors=M)
    anchors, mask = make_anchors()
    with pytest.raises(ValueError, match=r'anchors must have shape.*'
                       r'\(7, 5, 16\)'):
        head.set_anchors(anchors[:, :4])
    with pytest.raises(TypeError, match='floating point'):
        head.set_anchors(anchors.long())
    with pytest.raises(TypeError, match='Tensor or ndarray'):
        head.set_anchors(anchors.tolist())
    with pytest.raises(ValueError, match='NaN'):
        head.set_anchors(anchors.masked_fill(~mask[..., None], math.nan))
    with pytest.raises(TypeError, match='bool'):
        head.set_anchors(anchors, mask.float())
    with pytest.raises(ValueError, match='mask must have shape'):
        head.set_anchors(anchors, mask[:, :3])
    empty = mask.clone()
    empty[2] = False
    with pytest.raises(ValueError, match=r'no valid anchor \(first: \[2\]'):
        head.set_anchors(anchors, empty)
    with pytest.raises(ValueError, match='positive finite'):
        head.set_anchors(anchors, logit_scale=0.0)
    assert not head.has_anchors
    head.set_anchors(anchors.numpy(), mask.numpy())
    assert head.has_anchors
    with pytest.raises(ValueError, match=r'features of shape \(B, 16\)'):
        head((torch.randn(B, 8), ))
    for kwargs, match in ((dict(alpha=1.5), 'alpha'),
                          (dict(class_chunk=0), 'class_chunk'),
                          (dict(num_anchors=0), 'num_anchors'),
                          (dict(logit_scale=-1.0), 'logit_scale')):
        with pytest.raises(ValueError, match=match):
            LGRHead(C, D, **kwargs)


def test_init_and_scale_options():
    head = LGRHead(C, D, num_anchors=M)
    head.init_weights()
    assert torch.equal(head.attn_proj_q.weight, torch.eye(D))
    assert torch.equal(head.attn_proj_k.weight, torch.eye(D))
    assert head.attn_proj_q.bias is None and head.attn_proj_k.bias is None
    assert head.mlp[0].weight.std() < 0.05  # truncated normal, std 0.02
    assert 'log_scale' not in dict(head.named_parameters())
    torch.testing.assert_close(head.logit_scale, torch.tensor(100.0))
    head = LGRHead(C, D, num_anchors=M, learnable_scale=True, qk_bias=True)
    head.init_weights()
    assert torch.equal(head.attn_proj_k.bias, torch.zeros(D))
    assert 'log_scale' in dict(head.named_parameters())


def test_autocast_keeps_text_branch_in_float32():
    head = make_head()
    x = torch.randn(B, D)
    expected = head.branch_logits((x, ))[1]
    with torch.autocast('cpu', dtype=torch.bfloat16):
        logits_text = head.branch_logits((x, ))[1]
    assert logits_text.dtype == torch.float32
    torch.testing.assert_close(logits_text, expected, rtol=0.05, atol=0.5)


def test_first_forward_under_autocast_caches_float32_statistics():
    # AMP training: the cached anchor statistics are built inside autocast
    # on the first step and must still serve float32 forwards afterwards.
    head = make_head()
    x = torch.randn(B, D)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        first = head.branch_logits((x, ))[1]
    assert all(t.dtype == torch.float32 for t in head._stats.values()
               if torch.is_tensor(t) and t.is_floating_point())
    plain = head.branch_logits((x, ))[1]
    expected = make_head().branch_logits((x, ))[1]
    torch.testing.assert_close(plain, expected)
    torch.testing.assert_close(first, expected, rtol=0.05, atol=0.5)


class _FlattenLinear(nn.Module):
    """Trivial backbone: flatten the image, one linear layer."""

    def __init__(self, in_features, out_features):
        super().__init__()
        self.fc = nn.Linear(in_features, out_features)

    def forward(self, x):
        return (self.fc(x.flatten(1)), )


MODELS.register_module('LGRTestBackbone', module=_FlattenLinear, force=True)


def test_in_image_classifier():
    model = MODELS.build(
        dict(
            type='ImageClassifier',
            backbone=dict(type='LGRTestBackbone', in_features=48,
                          out_features=D),
            head=dict(type='LGRHead', num_classes=C, in_channels=D,
                      num_anchors=M, alpha=0.2,
                      cal_acc=False,
                      loss=dict(type='CrossEntropyLoss', use_soft=True)),
            data_preprocessor=dict(type='ClsDataPreprocessor',
                                   num_classes=C),
            train_cfg=dict(augments=dict(type='Mixup', alpha=0.8))))
    model.init_weights()
    anchors, mask = make_anchors()
    model.head.set_anchors(anchors, mask, logit_scale=30.0)
    data = dict(
        inputs=[torch.randint(0, 255, (3, 4, 4), dtype=torch.uint8)
                for _ in range(B)],
        data_samples=samples(labels=torch.arange(B) % C))
    optim = OptimWrapper(torch.optim.SGD(model.parameters(), lr=0.1))
    before = model.head.mlp[2].weight.clone()
    log = model.train_step(data, optim)
    assert set(log) >= {'loss', 'loss_image', 'loss_text'}
    torch.testing.assert_close(log['loss'],
                               log['loss_image'] + log['loss_text'])
    assert not torch.equal(model.head.mlp[2].weight, before)
    out = model.val_step(data)
    assert len(out) == B and out[0].pred_score.shape == (C, )
    assert out[0].pred_score_text.shape == (C, )
    tensor = model(torch.randn(B, 3, 4, 4), mode='tensor')
    torch.testing.assert_close(tensor.sum(-1), torch.ones(B))
