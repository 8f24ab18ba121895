"""Tests of the CVLP losses (VL-LTR Eqs. 2-3) and the row gathering."""
import math
import os.path as osp
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn as nn
import torch.nn.functional as F
from mmpretrain.registry import MODELS
from torch.nn.parallel import DistributedDataParallel

from vlltr_mm.models.losses import (
    ClassWiseContrastiveLoss,
    CLIPDistillationLoss,
)
from vlltr_mm.utils.distributed import (
    _GatherWithGrad,
    gather_batch_sizes,
    gather_no_grad,
    gather_with_grad,
    local_row_offset,
)

# --------------------------------------------------------------------------
# Direct implementations of Eqs. 2-3 on the full [B, B] matrix.


def naive_ccl(img, txt, labels, scale, eps=0.0):
    """Eq. 2 as printed per row, directions averaged, smoothing mixed in
    as (1 - eps) * CE(positives) + eps * CE(uniform)."""
    logits = scale * img @ txt.t()
    logp_i2t = logits - logits.logsumexp(dim=1, keepdim=True)
    logp_t2i = logits.t() - logits.t().logsumexp(dim=1, keepdim=True)
    pos = (labels[:, None] == labels[None, :]).to(img.dtype)
    l_vis = -(logp_i2t * pos).sum(1) / pos.sum(1)
    l_lin = -(logp_t2i * pos).sum(1) / pos.sum(1)
    l_vis = (1 - eps) * l_vis - eps * logp_i2t.mean(1)
    l_lin = (1 - eps) * l_lin - eps * logp_t2i.mean(1)
    return (l_vis.mean() + l_lin.mean()) / 2


def naive_distill(img, txt, t_img, t_txt, scale, t_scale):
    """Eq. 3 with the teacher's full rows / columns as targets."""
    logits = scale * img @ txt.t()
    t_logits = t_scale * t_img @ t_txt.t()
    l_img = -(t_logits.softmax(1) * logits.log_softmax(1)).sum(1)
    l_txt = -(t_logits.t().softmax(1) * logits.t().log_softmax(1)).sum(1)
    return (l_img.mean() + l_txt.mean()) / 2


def make_batch(batch_size=8, dim=5, dtype=torch.float64, seed=0):
    """Random unit embeddings (student and teacher) with repeated labels."""
    g = torch.Generator().manual_seed(seed)

    def unit(n, d):
        return F.normalize(torch.randn(n, d, generator=g, dtype=dtype), dim=1)

    labels = torch.randint(0, max(2, batch_size // 3), (batch_size, ),
                           generator=g)
    return dict(
        img=unit(batch_size, dim), txt=unit(batch_size, dim),
        labels=labels, t_img=unit(batch_size, dim + 1),
        t_txt=unit(batch_size, dim + 1),
        scale=torch.tensor(3.0 + torch.rand((), generator=g).item(),
                           dtype=dtype),
        t_scale=torch.tensor(4.5, dtype=dtype))


def lse(*values):
    return math.log(sum(math.exp(v) for v in values))


# --------------------------------------------------------------------------
# Hand-worked 4 x 4 example. Images are the standard basis, so
# S_ij = img_i . txt_j = txt_j[i]; with scale 2 the logits are
#   image rows        text rows (= columns of S)
#   [2, 1.2, 0, 0]    [2, 0, 0, 0]
#   [0, 1.6, 0, 0]    [1.2, 1.6, 0, 0]
#   [0, 0, 2, 1.6]    [0, 0, 2, 0]
#   [0, 0, 0, 1.2]    [0, 0, 1.6, 1.2]
# Labels [0, 0, 1, 2]: samples 0 and 1 are each other's positives.

HAND_IMG = torch.eye(4, dtype=torch.float64)
HAND_TXT = torch.tensor(
    [[1, 0, 0, 0], [0.6, 0.8, 0, 0], [0, 0, 1, 0], [0, 0, 0.8, 0.6]],
    dtype=torch.float64)
HAND_LABELS = torch.tensor([0, 0, 1, 2])
HAND_SCALE = torch.tensor(2.0, dtype=torch.float64)
IMG_ROWS = [[2, 1.2, 0, 0], [0, 1.6, 0, 0], [0, 0, 2, 1.6], [0, 0, 0, 1.2]]
TXT_ROWS = [[2, 0, 0, 0], [1.2, 1.6, 0, 0], [0, 0, 2, 0], [0, 0, 1.6, 1.2]]


def test_hand_worked_ccl():
    # Eq. 2: -(mean over positives of logit) + logsumexp of the row.
    vis = [(2 + 1.2) / -2 + lse(2, 1.2, 0, 0),
           (0 + 1.6) / -2 + lse(0, 1.6, 0, 0),
           -2 + lse(0, 0, 2, 1.6),
           -1.2 + lse(0, 0, 0, 1.2)]
    lin = [(2 + 0) / -2 + lse(2, 0, 0, 0),
           (1.2 + 1.6) / -2 + lse(1.2, 1.6, 0, 0),
           -2 + lse(0, 0, 2, 0),
           -1.2 + lse(0, 0, 1.6, 1.2)]
    expected = (sum(vis) / 4 + sum(lin) / 4) / 2
    loss = ClassWiseContrastiveLoss()(HAND_IMG, HAND_TXT, HAND_LABELS,
                                      HAND_SCALE)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    assert expected == pytest.approx(0.9079233, abs=1e-6)

    # Smoothing 0.1 mixes in 0.1 * CE against the uniform target.
    uniform = [lse(*r) - sum(r) / 4 for r in IMG_ROWS + TXT_ROWS]
    smoothed = [0.9 * v + 0.1 * u for v, u in zip(vis + lin, uniform)]
    expected_smooth = sum(smoothed) / 8
    loss = ClassWiseContrastiveLoss(label_smoothing=0.1)(
        HAND_IMG, HAND_TXT, HAND_LABELS, HAND_SCALE)
    assert loss.item() == pytest.approx(expected_smooth, abs=1e-12)

    # Paper's printed sum of the two directions, and the loss weight.
    loss = ClassWiseContrastiveLoss(sum_directions=True, loss_weight=0.5)(
        HAND_IMG, HAND_TXT, HAND_LABELS, HAND_SCALE)
    assert loss.item() == pytest.approx(expected, abs=1e-12)


def test_hand_worked_distillation():
    # Teacher S' = identity with scale 1: every teacher row and column
    # softmax is e / (e + 3) on the diagonal and 1 / (e + 3) elsewhere.
    e = math.e
    p_on, p_off = e / (e + 3), 1 / (e + 3)

    def soft_ce(row, i):
        return -sum((p_on if j == i else p_off) * (z - lse(*row))
                    for j, z in enumerate(row))

    expected = (sum(soft_ce(r, i) for i, r in enumerate(IMG_ROWS)) / 4 +
                sum(soft_ce(r, i) for i, r in enumerate(TXT_ROWS)) / 4) / 2
    eye = torch.eye(4, dtype=torch.float64)
    loss = CLIPDistillationLoss()(HAND_IMG, HAND_TXT, eye, eye, HAND_SCALE,
                                  1.0)
    assert loss.item() == pytest.approx(expected, abs=1e-12)
    loss = CLIPDistillationLoss(sum_directions=True, loss_weight=3.0)(
        HAND_IMG, HAND_TXT, eye, eye, HAND_SCALE, 1.0)
    assert loss.item() == pytest.approx(6 * expected, abs=1e-12)


@pytest.mark.parametrize('eps', [0.0, 0.1])
def test_ccl_matches_naive(eps):
    b = make_batch(batch_size=16, dim=8, seed=1)
    assert len(b['labels'].unique()) < 16  # repeated labels
    loss = MODELS.build(
        dict(type='ClassWiseContrastiveLoss', label_smoothing=eps))(
            b['img'], b['txt'], b['labels'], b['scale'])
    ref = naive_ccl(b['img'], b['txt'], b['labels'], b['scale'], eps)
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)


def test_distillation_matches_naive():
    b = make_batch(batch_size=16, dim=8, seed=2)
    loss = MODELS.build(dict(type='CLIPDistillationLoss'))(
        b['img'], b['txt'], b['t_img'], b['t_txt'], b['scale'],
        b['t_scale'])
    ref = naive_distill(b['img'], b['txt'], b['t_img'], b['t_txt'],
                        b['scale'], b['t_scale'])
    torch.testing.assert_close(loss, ref, rtol=0, atol=1e-12)


def test_gradcheck():
    b = make_batch(batch_size=5, dim=3, seed=3)
    img = b['img'].clone().requires_grad_()
    txt = b['txt'].clone().requires_grad_()
    scale = b['scale'].clone().requires_grad_()
    ccl = ClassWiseContrastiveLoss(label_smoothing=0.1)
    dis = CLIPDistillationLoss()
    assert torch.autograd.gradcheck(
        lambda i, t, s: ccl(i, t, b['labels'], s), (img, txt, scale))
    assert torch.autograd.gradcheck(
        lambda i, t, s: dis(i, t, b['t_img'], b['t_txt'], s, b['t_scale']),
        (img, txt, scale))


def test_teacher_is_constant():
    b = make_batch(seed=4)
    t_img = b['t_img'].clone().requires_grad_()
    t_scale = b['t_scale'].clone().requires_grad_()
    img = b['img'].clone().requires_grad_()
    loss = CLIPDistillationLoss()(img, b['txt'], t_img, b['t_txt'],
                                  b['scale'], t_scale)
    loss.backward()
    assert t_img.grad is None and t_scale.grad is None
    assert img.grad.abs().sum() > 0

    # A student equal to the teacher sits at the minimum (grad = 0).
    img = b['img'].clone().requires_grad_()
    txt = b['txt'].clone().requires_grad_()
    CLIPDistillationLoss()(img, txt, b['img'], b['txt'], 2.0,
                           2.0).backward()
    assert img.grad.abs().max() < 1e-12 and txt.grad.abs().max() < 1e-12

    # A half-precision teacher gives nearly the float32 loss.
    img32, txt32 = b['img'].float(), b['txt'].float()
    full = CLIPDistillationLoss()(img32, txt32, b['t_img'].float(),
                                  b['t_txt'].float(), 3.0, 4.5)
    half = CLIPDistillationLoss()(img32, txt32, b['t_img'].half(),
                                  b['t_txt'].half(), 3.0, 4.5)
    assert half.dtype == torch.float32
    torch.testing.assert_close(half, full, rtol=0, atol=2e-3)


# --------------------------------------------------------------------------
# Precision: the losses run in float32 whatever autocast and the towers do.


def loss_fns(b):
    """Both losses at CLIP's 1/tau = 100, as functions of the student's
    image and text embeddings and logit scale."""
    ccl = ClassWiseContrastiveLoss(label_smoothing=0.1)
    dis = CLIPDistillationLoss()
    return {
        'ccl': lambda i, t, s: ccl(i, t, b['labels'], s),
        'distill': lambda i, t, s: dis(i, t, b['t_img'].float(),
                                       b['t_txt'].float(), s, 100.0)}


def loss_and_grads(fn, img, txt, autocast):
    """Loss and the gradients of image, text and scale (a leaf of 100)."""
    img, txt = (x.detach().clone().requires_grad_() for x in (img, txt))
    scale = torch.tensor(100.0, requires_grad=True)
    with torch.autocast('cpu', torch.bfloat16, enabled=autocast):
        loss = fn(img, txt, scale)
    loss.backward()
    return loss.detach(), img.grad, txt.grad, scale.grad


def rel_gap(value, ref):
    """Largest absolute difference over the largest reference entry."""
    return ((value.double() - ref.double()).abs().max() /
            ref.double().abs().max()).item()


@pytest.mark.parametrize('name', ['ccl', 'distill'])
def test_bf16_autocast_matches_float32(name):
    b = make_batch(batch_size=32, dim=16, dtype=torch.float32, seed=5)
    fn = loss_fns(b)[name]
    ref = loss_and_grads(fn, b['img'], b['txt'], autocast=False)
    got = loss_and_grads(fn, b['img'], b['txt'], autocast=True)
    assert got[0].dtype == torch.float32
    for value, expected in zip(got, ref):
        assert rel_gap(value, expected) <= 1e-3

    # The check has teeth: the same formula with its matmul left to
    # autocast (bf16 logits) misses float32 by far more.
    img = b['img'].clone().requires_grad_()
    with torch.autocast('cpu', torch.bfloat16):
        low = naive_ccl(img, b['txt'], b['labels'], 100.0, eps=0.1)
    low.backward()
    full = b['img'].clone().requires_grad_()
    naive_ccl(full, b['txt'], b['labels'], 100.0, eps=0.1).backward()
    assert rel_gap(img.grad, full.grad) > 1e-2


@pytest.mark.parametrize('name', ['ccl', 'distill'])
def test_low_precision_features_get_float32_losses(name):
    """bf16 features (as bf16 towers hand them), not normalised: the loss
    is the float32 loss of the upcast, normalised features, and their
    gradients are its gradients rounded once to bf16."""
    b = make_batch(batch_size=12, dim=8, dtype=torch.float32, seed=6)
    fn = loss_fns(b)[name]
    img16, txt16 = (3 * b['img']).bfloat16(), (0.5 * b['txt']).bfloat16()
    loss, g_img, g_txt, g_scale = loss_and_grads(fn, img16, txt16, True)
    assert loss.dtype == torch.float32 and g_img.dtype == torch.bfloat16
    ref = loss_and_grads(fn, img16.float(), txt16.float(), False)
    assert torch.equal(loss, ref[0]) and torch.equal(g_scale, ref[3])
    assert torch.equal(g_img, ref[1].bfloat16())
    assert torch.equal(g_txt, ref[2].bfloat16())
    # Normalised inside: the scale of the inputs does not matter.
    unit = loss_and_grads(fn, F.normalize(img16.float(), dim=1),
                          F.normalize(txt16.float(), dim=1), False)
    torch.testing.assert_close(loss, unit[0], rtol=1e-6, atol=0)


def test_not_distributed_gather_is_identity():
    x = torch.randn(3, 2, requires_grad=True)
    assert gather_with_grad(x) is x
    assert not gather_no_grad(x).requires_grad
    assert gather_batch_sizes(3) == [3]
    assert local_row_offset(3) == 0


def test_construction_errors():
    # Shapes are not checked per batch (CVLP builds every input from one
    # batch); the arguments are, once, at construction.
    with pytest.raises(ValueError, match='label_smoothing must be in'):
        ClassWiseContrastiveLoss(label_smoothing=1.0)


# --------------------------------------------------------------------------
# Two gloo processes against one process on the whole batch.

SPLITS = {'even': [4, 4], 'ragged': [3, 5]}


class TinyCLIP(nn.Module):
    """Linear image / text "encoders" with a learnable log logit scale."""

    def __init__(self, seed):
        super().__init__()
        torch.manual_seed(seed)
        self.image = nn.Linear(6, 4).double()
        self.text = nn.Linear(5, 4).double()
        self.log_scale = nn.Parameter(torch.tensor(math.log(4.0)).double())

    def forward(self, images, texts):
        return (F.normalize(self.image(images), dim=1),
                F.normalize(self.text(texts), dim=1), self.log_scale.exp())


def ddp_inputs():
    g = torch.Generator().manual_seed(7)
    return (torch.randn(8, 6, generator=g, dtype=torch.float64),
            torch.randn(8, 5, generator=g, dtype=torch.float64),
            torch.tensor([0, 1, 0, 2, 1, 1, 3, 0]))


def cvlp_loss(model, teacher, images, texts, labels, distill):
    """Eq. 8 with lambda = 0.5, or the CCL term alone."""
    img, txt, scale = model(images, texts)
    loss = ClassWiseContrastiveLoss(label_smoothing=0.1)(img, txt, labels,
                                                         scale)
    if not distill:
        return loss
    with torch.no_grad():
        t_img, t_txt, t_scale = teacher(images, texts)
    return 0.5 * loss + 0.5 * CLIPDistillationLoss()(img, txt, t_img, t_txt,
                                                     scale, t_scale)


def loss_inputs():
    return make_batch(batch_size=8, dim=5, seed=11)


def run_losses(b, rows=slice(None)):
    """Every loss value and input gradient, on ``rows`` of the batch."""
    out = {}
    for name in ('ccl', 'ccl_smooth', 'distill'):
        img = b['img'][rows].clone().requires_grad_()
        txt = b['txt'][rows].clone().requires_grad_()
        scale = b['scale'].clone().requires_grad_()
        if name == 'distill':
            loss = CLIPDistillationLoss()(img, txt, b['t_img'][rows],
                                          b['t_txt'][rows], scale,
                                          b['t_scale'])
        else:
            eps = 0.1 if name == 'ccl_smooth' else 0.0
            loss = ClassWiseContrastiveLoss(label_smoothing=eps)(
                img, txt, b['labels'][rows], scale)
        loss.backward()
        out[name] = dict(loss=loss.detach(), img=img.grad, txt=txt.grad,
                         scale=scale.grad)
    return out


def run_ddp(rows=slice(None), distributed=False):
    images, texts, labels = ddp_inputs()
    model, teacher = TinyCLIP(seed=0), TinyCLIP(seed=1).requires_grad_(False)
    out = {}
    for distill in (False, True):
        model.zero_grad()
        wrapped = DistributedDataParallel(model) if distributed else model
        cvlp_loss(wrapped, teacher, images[rows], texts[rows], labels[rows],
                  distill).backward()
        out[distill] = {n: p.grad.clone() for n, p in model.named_parameters()}
    return out


def _worker(rank, port, out_dir):
    dist.init_process_group('gloo', init_method=f'tcp://127.0.0.1:{port}',
                            rank=rank, world_size=2)
    result = {}
    for split_name, split in SPLITS.items():
        start = sum(split[:rank])
        rows = slice(start, start + split[rank])
        sizes = gather_batch_sizes(split[rank])
        # Gathering, with both backward paths (all-reduce and the
        # reduce-scatter used on NCCL).
        x = torch.arange(8 * 3, dtype=torch.float64).view(8, 3)[rows]
        weight = torch.randn(8, 3, dtype=torch.float64,
                             generator=torch.Generator().manual_seed(rank))
        grads = []
        for reduce_scatter in (False, True):
            leaf = x.clone().requires_grad_()
            gathered = (gather_with_grad(leaf) if not reduce_scatter else
                        _GatherWithGrad.apply(leaf, sizes, None, True))
            (gathered * weight).sum().backward()
            grads.append(leaf.grad)
        result[split_name] = dict(
            sizes=sizes, offset=local_row_offset(split[rank]),
            gathered=gathered.detach(), grads=grads,
            labels=gather_no_grad(torch.tensor([rank] * split[rank])),
            losses=run_losses(loss_inputs(), rows),
            ddp=run_ddp(rows, distributed=True))
    try:
        gather_with_grad(torch.zeros(2, 1), sizes=[2])
    except ValueError as e:
        result['error'] = str(e)
    torch.save(result, osp.join(out_dir, f'rank{rank}.pt'))
    dist.destroy_process_group()


def _free_port():
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_two_process_equals_single_process(tmp_path):
    mp.spawn(_worker, args=(_free_port(), str(tmp_path)), nprocs=2)
    ranks = [torch.load(tmp_path / f'rank{r}.pt', weights_only=False)
             for r in range(2)]
    close = dict(rtol=0, atol=1e-5)
    assert 'sizes has 1 entries but the process group has 2' in (
        ranks[0]['error'])
    weights = [
        torch.randn(8, 3, dtype=torch.float64,
                    generator=torch.Generator().manual_seed(r))
        for r in range(2)
    ]
    full_x = torch.arange(8 * 3, dtype=torch.float64).view(8, 3)
    single_ddp = run_ddp()
    for split_name, split in SPLITS.items():
        starts = [0, split[0]]
        single = run_losses(loss_inputs())
        for rank, res in enumerate(ranks):
            res = res[split_name]
            rows = slice(starts[rank], starts[rank] + split[rank])
            assert res['sizes'] == split and res['offset'] == starts[rank]
            torch.testing.assert_close(res['gathered'], full_x, **close)
            assert res['labels'].tolist() == [0] * split[0] + [1] * split[1]
            # A rank's rows get the gradient of every rank's output.
            for grad in res['grads']:
                torch.testing.assert_close(grad, sum(weights)[rows], **close)
            for distill, grads in res['ddp'].items():
                for name, grad in grads.items():
                    torch.testing.assert_close(
                        grad, single_ddp[distill][name], **close,
                        msg=f'{split_name} distill={distill} {name}')
        for name, ref in single.items():
            per_rank = [r[split_name]['losses'][name] for r in ranks]
            # DDP averages over the two ranks: the mean loss, the summed
            # and halved input gradients, the averaged scale gradient.
            torch.testing.assert_close(
                (per_rank[0]['loss'] + per_rank[1]['loss']) / 2, ref['loss'],
                **close)
            torch.testing.assert_close(
                (per_rank[0]['scale'] + per_rank[1]['scale']) / 2,
                ref['scale'], **close)
            for key in ('img', 'txt'):
                torch.testing.assert_close(
                    torch.cat([per_rank[0][key], per_rank[1][key]]) / 2,
                    ref[key], **close, msg=f'{split_name} {name} {key}')
