"""The LGR head and AnSS parts of ``gpu_check.py``.

``part_lgr_head`` times the LGR head's train step (efficient vs direct
form) at ImageNet-LT and iNat sizes and checks its logits under autocast
against float32; ``part_anss`` times AnSS scoring (``lin_loss_scores``)
and checks it against float64. Both run in a child process forked by
``gpu_check.py`` and report every finished row at once through
``ctx.emit``. The timers of ``bench_lgr_head.py`` are imported from that
script, not copied. :func:`lgr_heads` also serves the correctness part.

Not meant to be run directly; see ``gpu_check.py``.
"""
import time

import torch
from bench_common import build_lgr_head
from gpu_check_common import (
    DTYPES,
    LOGIT_SCALE,
    MIB,
    ROUNDOFF,
    checked,
    free_memory,
    load_script,
    peak_memory,
    rel_diff,
)

from vlltr_mm.engine.hooks.anss_scoring import lin_loss_scores

# The LGR text branch rounds three chained products (query, attention
# scores, gathered text) before its fp32 cosine: 16u.
LGR_TOL_U = 16
# Efficient and direct forms are the same numbers in another order.
IMPL_TOL = 1e-4


# ----------------------------------------------------------------------
# lgr_head


def lgr_inputs(c, m, d, b, device, seed=0):
    """Anchors [C, M, D], mask [C, M], features [B, D] and labels [B].

    Each feature lies near its class's mean anchor, so the text-branch
    cosines are as large as after training, not the ~0 of random vectors
    (which would hide errors relative to the logits' size). Drawn on the
    device: the iNat anchors are 0.5 G numbers.

    Args:
        c (int): Classes C.
        m (int): Anchors per class M.
        d (int): Embedding size D.
        b (int): Batch B.
        device (str): Where the tensors live.
        seed (int): Generator seed. Defaults to 0.

    Returns:
        tuple: ``anchors``, ``mask``, ``feats`` and ``labels`` (a list).
    """
    g = torch.Generator(device).manual_seed(seed)
    anchors = torch.randn(c, m, d, generator=g, device=device)
    mask = torch.rand(c, m, generator=g, device=device) > 0.25
    mask[:, 0] = True  # some classes have fewer than M sentences
    labels = torch.randint(0, c, (b, ), generator=g, device=device)
    feats = anchors[labels].mean(1) + 0.1 * torch.randn(
        b, d, generator=g, device=device)
    return anchors, mask, feats, labels.tolist()


def lgr_heads(size, device, chunk):
    """Fresh efficient and direct heads with the same weights and anchors.

    Fresh, because a head caches statistics of its anchors on its first
    forward, in whatever precision that forward ran: a check must start
    from an empty cache as a training run does.

    Args:
        size (tuple): ``(name, C, M, D, B)``.
        device (str): Where the heads live.
        chunk (int): ``class_chunk`` of the efficient head.

    Returns:
        tuple: ``{impl: LGRHead}``, features [B, D] and labels (list).
    """
    _, c, m, d, b = size
    anchors, mask, feats, labels = lgr_inputs(c, m, d, b, device)
    torch.manual_seed(0)
    heads = {}
    for impl in ('efficient', 'direct'):
        head = build_lgr_head(
            impl, c, d, num_anchors=m,
            class_chunk=chunk if impl == 'efficient' else None)
        if heads:
            head.load_state_dict(heads['efficient'].state_dict())
        heads[impl] = head.to(device)
        head.set_anchors(anchors, mask, logit_scale=LOGIT_SCALE)
    return heads, feats, labels


def lgr_agreement(ctx, size):
    """Logits of both forms in fp32 and under each autocast dtype.

    Args:
        ctx (PartContext): Device and sizes; rows go to ``'checks'``.
        size (tuple): ``(name, C, M, D, B)``.
    """
    chunk = ctx.sizes['lgr_chunk']
    heads, feats, _ = lgr_heads(size, ctx.device, chunk)
    with torch.no_grad():
        ref = {k: h.branch_logits((feats, )) for k, h in heads.items()}
    del heads
    diff, rel = rel_diff(ref['efficient'][1], ref['direct'][1])
    ctx.emit('checks', dict(
        check='lgr efficient vs direct', size=size[0], dtype='fp32',
        max_abs=diff, value=rel, tol=IMPL_TOL, ok=rel <= IMPL_TOL))
    for amp, unsupported in ctx.autocast_dtypes().items():
        if unsupported:
            continue
        tol = LGR_TOL_U * ROUNDOFF[amp]
        heads, feats, _ = lgr_heads(size, ctx.device, chunk)
        for impl, head in heads.items():

            def compare():
                with torch.no_grad(), torch.autocast(ctx.device,
                                                     DTYPES[amp]):
                    image, text = head.branch_logits((feats, ))
                diff, rel = rel_diff(text, ref[impl][1])
                image_rel = rel_diff(image, ref[impl][0])[1]
                return dict(max_abs=diff, value=rel, image_rel=image_rel,
                            ok=max(rel, image_rel) <= tol)

            checked(ctx, dict(check=f'lgr {impl} {amp} vs fp32',
                              size=size[0], dtype=amp, tol=tol), compare)
        del heads
        free_memory()


def part_lgr_head(ctx):
    """LGR train step (efficient vs direct) and autocast agreement.

    Times and peaks come from ``bench_lgr_head.run_worker`` (float32; the
    peaks count activations and temporaries, not weights or anchors).

    Args:
        ctx (PartContext): Device, sizes and deadline; rows go to
            ``'cases'`` and ``'checks'``.
    """
    bench = load_script('bench_lgr_head')
    cuda = ctx.device.startswith('cuda')
    last = 0.0
    for size in ctx.sizes['lgr']:
        name, c, m, d, b = size
        # Sizes grow, so the next one takes at least as long as the last.
        reason = ctx.skip_reason(last)
        if reason:
            ctx.emit('cases', dict(size=name, status='skipped', skip='time',
                                   reason=reason))
            continue
        start = time.monotonic()
        for impl in ('efficient', 'direct'):
            chunk = ctx.sizes['lgr_chunk'] if impl == 'efficient' else None
            spec = dict(size=name, C=c, M=m, D=d, B=b, impl=impl,
                        class_chunk=chunk, device=ctx.device,
                        repeats=3 if cuda else 1)
            r = bench.run_worker(spec)
            free_memory()
            ctx.emit('cases', dict(
                size=name, C=c, M=m, D=d, B=b, impl=impl, class_chunk=chunk,
                train_ms=1e3 * r['train_wall'],
                train_extra_mib=r['train_peak'] / MIB,
                infer_ms=1e3 * r['infer_wall'],
                infer_extra_mib=r['infer_peak'] / MIB))
        lgr_agreement(ctx, size)
        free_memory()
        last = time.monotonic() - start


# ----------------------------------------------------------------------
# anss


def part_anss(ctx):
    """Chunked L_lin scoring of every sentence against the image pool.

    Args:
        ctx (PartContext): Device and sizes (``anss``: sentences N,
            images P, D, classes); rows go to ``'cases'`` and
            ``'checks'``.
    """
    n, p, d, c = ctx.sizes['anss']
    g = torch.Generator(ctx.device).manual_seed(0)
    text = torch.randn(n, d, device=ctx.device, generator=g)
    images = torch.randn(p, d, device=ctx.device, generator=g)
    sent_labels = torch.arange(n, device=ctx.device) * c // n
    img_labels = torch.arange(p, device=ctx.device) * c // p
    chunk = ctx.sizes['anss_chunk']
    # Warm-up (kernels, allocator) outside the timing.
    lin_loss_scores(text[:8], images, sent_labels[:8], img_labels, LOGIT_SCALE)
    with peak_memory(ctx.device) as mem:
        ctx.sync()
        start = time.perf_counter()
        scores = lin_loss_scores(text, images, sent_labels, img_labels,
                                 LOGIT_SCALE, chunk)
        ctx.sync()
        seconds = time.perf_counter() - start
    # A float64 reference on a few sentences, spread over the classes.
    idx = torch.linspace(0, n - 1, 64, device=ctx.device).long()
    ref = lin_loss_scores(text[idx].double(), images.double(),
                          sent_labels[idx], img_labels, LOGIT_SCALE)
    diff, rel = rel_diff(scores[idx], ref)
    ctx.emit('cases', dict(
        sentences=n, images=p, dim=d, classes=c, chunk=chunk,
        seconds=seconds, sentences_per_s=n / seconds,
        peak_mib=(mem.base + mem.peak) / MIB,
        input_mib=(n + p) * d * 4 / MIB))
    ctx.emit('checks', dict(
        check='anss scores vs float64', max_abs=diff, value=rel,
        tol=1e-4, ok=bool(torch.isfinite(scores).all()) and rel <= 1e-4))
