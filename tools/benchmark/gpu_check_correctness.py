"""The correctness part of ``gpu_check.py``: autocast vs float32.

Both CVLP losses and their gradients under each autocast dtype against
float32, and one optimizer step of CVLP and of the LGR head under
autocast leaving finite weights. Runs in a child process forked by
``gpu_check.py``; every check is reported at once through ``ctx.emit``.

Not meant to be run directly; see ``gpu_check.py``.
"""
import contextlib
import math
from argparse import Namespace

import torch
import torch.nn.functional as F
from gpu_check_common import (
    DTYPES,
    LOGIT_SCALE,
    ROUNDOFF,
    AutocastOptimWrapper,
    checked,
    free_memory,
    load_script,
    rel_diff,
)
from gpu_check_lgr_anss import lgr_heads
from mmpretrain.structures import DataSample

from vlltr_mm.models.losses import (
    ClassWiseContrastiveLoss,
    CLIPDistillationLoss,
)

# A loss under autocast is its fp32 formula on logits rounded once to the
# low precision (the matmul accumulates in fp32; softmax, log and the sums
# run in fp32), so its relative error is a few u; 8u leaves room for the
# rounding of the inputs. A softmax or target run in low precision by
# mistake costs far more.
LOSS_TOL_U = 8


def loss_inputs(b, d, device, seed=0):
    """Clustered unit embeddings, as after training.

    Pairs of a class agree (cosine ~0.8), so the logits reach the size
    that autocast must round.

    Args:
        b (int): Batch B (about four per class).
        d (int): Embedding size D.
        device (str): Where the tensors live.
        seed (int): Generator seed. Defaults to 0.

    Returns:
        tuple: Student image, student text, teacher image and teacher
        text embeddings (each [B, D]) and labels [B].
    """
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, max(1, b // 4), (b, ), generator=g)
    centres = torch.randn(b, d, generator=g)

    def rows():
        noise = 0.5 * torch.randn(b, d, generator=g)
        return F.normalize(centres[labels] + noise, dim=1).to(device)

    return [rows() for _ in range(4)], labels.to(device)


def check_losses(ctx):
    """Both CVLP losses and their gradients, autocast vs float32.

    Args:
        ctx (PartContext): Device and sizes; rows go to ``'checks'``.
    """
    feats, labels = loss_inputs(ctx.sizes['loss_batch'],
                                ctx.sizes['loss_dim'], ctx.device)
    losses = {
        'ClassWiseContrastiveLoss': lambda i, t: ClassWiseContrastiveLoss(
            label_smoothing=0.1)(i, t, labels, LOGIT_SCALE),
        'CLIPDistillationLoss': lambda i, t: CLIPDistillationLoss()(
            i, t, feats[2], feats[3], LOGIT_SCALE, LOGIT_SCALE)}
    for name, fn in losses.items():
        runs = {}
        for amp in ('fp32', *ctx.autocast_dtypes()):
            if amp != 'fp32' and ctx.autocast_dtypes()[amp]:
                continue
            img, txt = (f.clone().requires_grad_() for f in feats[:2])
            with (contextlib.nullcontext() if amp == 'fp32' else
                  torch.autocast(ctx.device, DTYPES[amp])):
                loss = fn(img, txt)
            loss.backward()
            runs[amp] = loss.detach(), torch.cat([img.grad, txt.grad])
        for amp, (loss, grad) in runs.items():
            if amp == 'fp32':
                continue
            tol = LOSS_TOL_U * ROUNDOFF[amp]
            grad_tol = LOGIT_SCALE * ROUNDOFF[amp]
            value = rel_diff(loss, runs['fp32'][0])[1]
            grad_rel = rel_diff(grad, runs['fp32'][1])[1]
            ctx.emit('checks', dict(
                check=f'{name} {amp} vs fp32', dtype=amp,
                loss=float(runs['fp32'][0]), value=value, tol=tol,
                grad_rel=grad_rel, grad_tol=grad_tol,
                ok=bool(torch.isfinite(loss)) and value <= tol
                and grad_rel <= grad_tol))


def params_finite(module):
    """Whether every parameter of ``module`` is finite."""
    return all(bool(torch.isfinite(p).all()) for p in module.parameters())


def check_steps(ctx):
    """One optimizer step of CVLP and of LGR leaves finite weights.

    Args:
        ctx (PartContext): Device and sizes; rows go to ``'checks'``.
    """
    bench = load_script('bench_cvlp_step')
    sizes = ctx.sizes
    state = bench.setup_step(Namespace(
        model=sizes['archs'][0], image_size=None, device=ctx.device,
        batch_size=sizes['step_batch'], num_classes=sizes['step_batch']))
    model = state['model']
    dtypes = [k for k, v in ctx.autocast_dtypes().items() if v is None]
    try:
        for amp in dtypes:

            def cvlp_step():
                wrapper = AutocastOptimWrapper(
                    state['wrapper'].optimizer, ctx.device, amp)
                log = model.train_step(state['cached'], wrapper)
                loss = float(log['loss'].detach())
                ok = math.isfinite(loss) and params_finite(model)
                return dict(loss=loss, value=float(ok), ok=ok)

            checked(ctx, dict(check=f'CVLP step {amp}: finite weights',
                              model=sizes['archs'][0], dtype=amp, tol=1.0),
                    cvlp_step)
    finally:
        state['tmp_dir'].cleanup()
        model = state = None
        free_memory()
    size = sizes['lgr'][0]
    for amp in dtypes:
        # Fresh heads: the first forward runs under autocast, as in an
        # AMP training run.
        heads, feats, labels = lgr_heads(size, ctx.device,
                                         sizes['lgr_chunk'])
        samples = [DataSample().set_gt_label(y) for y in labels]
        for impl, head in heads.items():

            def lgr_step():
                wrapper = AutocastOptimWrapper(
                    torch.optim.AdamW(head.parameters(), lr=1e-3),
                    ctx.device, amp)
                with wrapper.optim_context(head):
                    losses = head.loss((feats, ), samples)
                loss = losses['loss_image'] + losses['loss_text']
                wrapper.update_params(loss)
                ok = bool(torch.isfinite(loss)) and params_finite(head)
                return dict(loss=float(loss.detach()), value=float(ok),
                            ok=ok)

            checked(ctx, dict(check=f'LGR {impl} step {amp}: finite '
                              'weights', size=size[0], dtype=amp, tol=1.0),
                    lgr_step)


def part_correctness(ctx):
    """Losses under autocast vs fp32, and finite weights after a step.

    Args:
        ctx (PartContext): Device and sizes; rows go to ``'checks'``.
    """
    check_losses(ctx)
    check_steps(ctx)
