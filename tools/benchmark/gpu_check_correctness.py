"""The correctness part of ``gpu_check.py``: autocast vs float32.

Both CVLP losses and their gradients under each autocast dtype against
float32 on the same features (the losses' own error: none, they run in
float32), the gradients of a whole CVLP step under autocast against
float32 (the towers' error on top), and one optimizer step of CVLP and of
the LGR head under autocast leaving finite weights. Runs in a child
process forked by ``gpu_check.py``; every check is reported at once
through ``ctx.emit``.

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

# The losses normalise, form the logits and take the softmax in float32
# with autocast off, so on the same float32 features their value and
# gradients under autocast equal the float32 run's up to float32 rounding
# (another kernel may sum in another order). Logits rounded to bf16 cost
# up to LOGIT_SCALE * u = 0.4 instead (0.11-0.15 measured before the
# losses upcast).
LOSS_TOL = 1e-4
# The whole step's gap is the towers' own low-precision arithmetic (tiny
# random towers on a CPU: up to ~0.2); the tolerance catches a broken
# step (a gradient lost, or of the wrong sign, is a gap of 1 or 2).
STEP_GRAD_TOL = 0.5


@contextlib.contextmanager
def exact_fp32():
    """TF32 off, so that the float32 reference on a GPU is float32."""
    saved = (torch.backends.cuda.matmul.allow_tf32,
             torch.backends.cudnn.allow_tf32)
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        (torch.backends.cuda.matmul.allow_tf32,
         torch.backends.cudnn.allow_tf32) = saved


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

    The same float32 features go to both runs, so any gap is the losses'
    own low-precision arithmetic.

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
            with (exact_fp32() if amp == 'fp32' else
                  torch.autocast(ctx.device, DTYPES[amp])):
                loss = fn(img, txt)
            loss.backward()
            runs[amp] = loss.detach(), torch.cat([img.grad, txt.grad])
        for amp, (loss, grad) in runs.items():
            if amp == 'fp32':
                continue
            value = rel_diff(loss, runs['fp32'][0])[1]
            grad_rel = rel_diff(grad, runs['fp32'][1])[1]
            ctx.emit('checks', dict(
                check=f'{name} {amp} vs fp32', dtype=amp,
                loss=float(runs['fp32'][0]), loss_dtype=str(loss.dtype),
                value=value, tol=LOSS_TOL, grad_rel=grad_rel,
                grad_tol=LOSS_TOL,
                ok=loss.dtype == torch.float32 and value <= LOSS_TOL
                and grad_rel <= LOSS_TOL))


# Tower parameters whose gradients the whole-step check compares: the
# first and last weight (>= 2-D) of each tower, in registration order.
TOWERS = ('backbone', 'text_encoder')
# fp16 backward without a scaler underflows in the towers: the loss is
# scaled, from GradScaler's first scale down until the gradients are
# finite (its back-off), and the scale divided out again.
FP16_LOSS_SCALES = (2.0**16, 2.0**12, 2.0**8, 2.0**4, 1.0)


def step_gradients(model, data, device, amp):
    """Gradients of L_pre (Eq. 8) on one batch, no optimizer step.

    Args:
        model (CVLP): In train mode.
        data (dict): The data preprocessor's output for the batch.
        device (str): Autocast device type.
        amp (str): ``'fp32'``, ``'bf16'`` or ``'fp16'``.

    Returns:
        dict: ``{name: gradient}`` (float32) of every parameter that got
        one.
    """
    for scale in FP16_LOSS_SCALES if amp == 'fp16' else (1.0, ):
        model.zero_grad(set_to_none=True)
        with (exact_fp32() if amp == 'fp32' else
              torch.autocast(device, DTYPES[amp])):
            losses = model(**data, mode='loss')
        loss = sum(v for k, v in losses.items() if 'loss' in k)
        (scale * loss).backward()
        grads = {n: p.grad.float() / scale
                 for n, p in model.named_parameters() if p.grad is not None}
        if all(bool(torch.isfinite(g).all()) for g in grads.values()):
            break
    return grads


def check_step_gradients(ctx):
    """A whole CVLP step under autocast vs float32: tower gradients.

    The same model and batch, with ``1/tau`` = 100 as in a trained CLIP
    (the student's and the teacher's), so that the logits reach the size
    autocast must round. Reports the largest normwise relative gap over
    the first and last weight of each tower and the logit scale. The
    towers themselves run in low precision, so the gap is theirs plus the
    losses'; the tolerance only catches a broken step.

    Args:
        ctx (PartContext): Device and sizes; rows go to ``'checks'``.
    """
    bench = load_script('bench_cvlp_step')
    sizes = ctx.sizes
    arch = sizes['archs'][0]
    state = bench.setup_step(Namespace(
        model=arch, image_size=None, device=ctx.device,
        batch_size=sizes['step_batch'],
        num_classes=max(1, sizes['step_batch'] // 2)))
    model = state['model']
    try:
        with torch.no_grad():
            model.logit_scale.fill_(math.log(LOGIT_SCALE))
        model.teacher.scale = LOGIT_SCALE
        data = model.data_preprocessor(state['cached'], True)
        names = ['logit_scale']
        for tower in TOWERS:
            own = [n for n, p in model.named_parameters()
                   if n.startswith(tower + '.') and p.requires_grad
                   and p.dim() >= 2]
            names += [own[0], own[-1]]
        ref = step_gradients(model, data, ctx.device, 'fp32')
        for amp in [k for k, v in ctx.autocast_dtypes().items()
                    if v is None]:

            def gap():
                grads = step_gradients(model, data, ctx.device, amp)
                gaps = {n: rel_diff(grads[n], ref[n])[1] for n in names}
                worst = max(gaps, key=gaps.get)
                finite = all(bool(torch.isfinite(g).all())
                             for g in grads.values())
                return dict(value=gaps[worst], worst=worst,
                            grad_rel=', '.join(
                                f'{n}: {g:.3g}' for n, g in gaps.items()),
                            ok=finite and gaps[worst] <= STEP_GRAD_TOL)

            checked(ctx, dict(check=f'CVLP step {amp} vs fp32: gradients',
                              model=arch, dtype=amp, tol=STEP_GRAD_TOL),
                    gap)
    finally:
        state['tmp_dir'].cleanup()
        model = state = None
        free_memory()


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
    check_step_gradients(ctx)
    check_steps(ctx)
