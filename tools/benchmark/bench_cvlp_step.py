"""Benchmark a CVLP training step and the contrastive logits' memory.

Two measurements, in one run:

(a) Step time. One CVLP model (random init, no download) and one batch
    run full training steps (data preprocessor, forward, L_pre of Eq. 8,
    backward, AdamW step) in two ways that alternate step by step: with
    the sentences' corpus indices, so the frozen teacher reads its text
    embeddings from the cache, and without them, so the teacher runs its
    text tower on every step as the authors' code does. Warm-up steps are
    not timed; the one-off cost of building the cache is reported apart,
    and so are the teacher's text tower on the batch and the cache lookup
    that replaces it. On CPU the run uses one thread by default: on a
    small machine shared with other work, threads that wait for each
    other make step times scatter several-fold.

(b) Logits memory per rank. The losses of Eqs. 2-3 compare the local rows
    with the global batch. For rank 0 of W ranks x B_local images, the
    real ``ClassWiseContrastiveLoss`` and ``CLIPDistillationLoss`` run
    forward and backward (``'local'``) as on a rank: [B_local, B_global]
    logits against the gathered [B_global, D] embeddings, ours; and
    (``'global'``) on the gathered [B_global, D] rows: the full
    [B_global, B_global] square the authors build on every rank. The
    other ranks' rows are constants and the all-gather is a concatenation
    whose backward copies the global gradient and keeps this rank's slice,
    as the gloo path does, so no process group is needed. Each case runs
    in a fresh process forked from a server that has the modules loaded,
    with a fixed glibc mmap threshold so that freed buffers leave the
    resident set. The peak is the rise of the peak resident set
    (``VmHWM``, reset through ``/proc/self/clear_refs``) on CPU, or of
    ``torch.cuda.max_memory_allocated`` on CUDA, over the level with the
    inputs allocated; the analytic sizes of one fp32 logits matrix and of
    one gathered embedding are printed too.

Example::

    python tools/benchmark/bench_cvlp_step.py                # ~2 min
    python tools/benchmark/bench_cvlp_step.py --device cuda --batch-size 16
    python tools/benchmark/bench_cvlp_step.py --quick        # ~10 s
"""
import argparse
import json
import math
import multiprocessing as mp
import os
import statistics
import tempfile
import time

import torch

MIB = 2**20
# (ranks W, local batch B_local, embedding size D): the authors' setting
# (8 GPUs x 256, CLIP RN50) and a larger global batch.
MEMORY_CASES = ((8, 256, 1024), (32, 128, 1024))
QUICK_MEMORY_CASES = ((4, 128, 64), (8, 64, 64))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--model', default=None,
                        help="open_clip model name (default 'RN50', "
                        "'vlltr-tiny-rn' with --quick)")
    parser.add_argument('--batch-size', type=int, default=None,
                        help='images per step (default 8, 4 with --quick)')
    parser.add_argument('--image-size', type=int, default=None,
                        help="input size; changes the tower's own size "
                        "(default: the model's, 224 for RN50)")
    parser.add_argument('--steps', type=int, default=None,
                        help='timed steps per way (default 5, 3 with '
                        '--quick)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed steps per way before timing')
    parser.add_argument('--num-classes', type=int, default=None,
                        help='classes of the corpus, 7 prompts each '
                        '(default: the batch size)')
    parser.add_argument('--device', default=None,
                        help='cpu or cuda (default: cuda when available)')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch CPU threads, 0 for torch\'s default '
                        '(default 1 on CPU: on a small shared machine '
                        'several threads spin-wait for each other and the '
                        'step times scatter several-fold)')
    parser.add_argument('--memory-cases', nargs='+', default=None,
                        type=parse_case, metavar='WxBxD',
                        help='ranks x local batch x dim for (b) (default '
                        '8x256x1024 32x128x1024)')
    parser.add_argument('--skip-step', action='store_true',
                        help='only measure (b)')
    parser.add_argument('--skip-memory', action='store_true',
                        help='only measure (a)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny model and sizes, a sanity run')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    if args.device is None:
        args.device = 'cuda' if torch.cuda.is_available() else 'cpu'
    if args.threads is None:
        args.threads = 1 if args.device == 'cpu' else 0
    quick = args.quick
    if args.model is None:
        args.model = 'vlltr-tiny-rn' if quick else 'RN50'
    if args.batch_size is None:
        args.batch_size = 4 if quick else 8
    if args.steps is None:
        args.steps = 3 if quick else 5
    if args.num_classes is None:
        args.num_classes = args.batch_size
    if args.memory_cases is None:
        args.memory_cases = list(
            QUICK_MEMORY_CASES if quick else MEMORY_CASES)
    for name in ('batch_size', 'steps', 'num_classes'):
        if getattr(args, name) <= 0:
            parser.error(f'--{name.replace("_", "-")} must be positive')
    return args


def _size(num_bytes):
    """Bytes as MiB, or KiB below 0.1 MiB."""
    if num_bytes < 0.1 * MIB:
        return f'{num_bytes / 1024:.1f} KiB'
    return f'{num_bytes / MIB:.2f} MiB'


def parse_case(text):
    """``'8x256x1024'`` -> ``(8, 256, 1024)``."""
    try:
        case = tuple(int(v) for v in text.lower().split('x'))
    except ValueError:
        case = ()
    if len(case) != 3 or min(case) <= 0:
        raise argparse.ArgumentTypeError(
            f'memory case must be WxBxD with positive ints, got {text!r}')
    return case


# ----------------------------------------------------------------------
# (a) step time


def build_cvlp(args, cache_dir):
    """A randomly initialised CVLP model with both losses and a teacher."""
    from mmpretrain.registry import MODELS

    from vlltr_mm.models.open_clip_adapter.factory import build_open_clip
    model_name = args.model
    if args.image_size is None:
        clip_model = build_open_clip(model_name)
    else:
        import open_clip
        clip_model = open_clip.create_model(
            model_name, force_custom_text=True,
            force_image_size=args.image_size, pretrained_image=False,
            pretrained_text=False)
    names = [f'class {i}' for i in range(args.num_classes)]
    cfg = dict(
        type='CVLP',
        backbone=dict(
            type='OpenCLIPVisual', model_name=model_name,
            clip_model=clip_model),
        text_encoder=dict(
            type='OpenCLIPTextEncoder', model_name=model_name,
            clip_model=clip_model),
        corpus=dict(
            type='ClassTextCorpus', class_names=names, templates='simple'),
        ccl_loss=dict(type='ClassWiseContrastiveLoss', label_smoothing=0.1),
        distill_loss=dict(type='CLIPDistillationLoss'),
        loss_lambda=0.5,
        teacher=dict(cache_dir=cache_dir),
        data_preprocessor=dict(
            type='ClassTextDataPreprocessor',
            mean=[122.771, 116.746, 104.094],
            std=[68.501, 66.632, 70.323],
            to_rgb=True))
    return MODELS.build(cfg)


def make_batches(model, batch_size, image_size, seed=0):
    """The same batch as the dataloader gives it, with and without the
    sentences' corpus indices."""
    from mmpretrain.structures import DataSample
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(batch_size) % model.corpus.num_classes
    idx = model.corpus.sample_indices(labels, g)
    images = torch.randint(
        0, 256, (batch_size, 3, image_size, image_size), generator=g,
        dtype=torch.uint8)
    base = dict(
        inputs=list(images),
        text_tokens=model.corpus.get_tokens(idx.numpy()))
    samples = [DataSample().set_gt_label(int(y)) for y in labels]
    cached = dict(base, data_samples=samples, text_index=idx)
    uncached = dict(base, data_samples=samples)
    return cached, uncached


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


def setup_step(args):
    """Model, optimizer wrapper, both batches and the teacher text cache.

    Returns:
        dict: ``model``, ``wrapper``, the ``cached`` and ``uncached``
        batches, ``cache_seconds`` (building the cache) and ``tmp_dir``
        (holds the cache file until cleaned up).
    """
    from mmengine.optim import build_optim_wrapper
    device = args.device
    torch.manual_seed(0)
    tmp_dir = tempfile.TemporaryDirectory()
    model = build_cvlp(args, tmp_dir.name).to(device)
    model.train()
    wrapper = build_optim_wrapper(
        model,
        dict(
            optimizer=dict(type='AdamW', lr=1e-6, weight_decay=0.05),
            paramwise_cfg=dict(
                custom_keys={'logit_scale': dict(decay_mult=0.0)})))
    image_size = model.backbone.image_size[0]
    cached, uncached = make_batches(model, args.batch_size, image_size)
    _sync(device)
    start = time.perf_counter()
    model.teacher.text_cache(model.corpus, torch.device(device))
    _sync(device)
    cache_seconds = time.perf_counter() - start
    return dict(model=model, wrapper=wrapper, cached=cached,
                uncached=uncached, cache_seconds=cache_seconds,
                tmp_dir=tmp_dir)


def _timed(fn, device):
    """Wall and CPU seconds of ``fn()``."""
    _sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    _sync(device)
    return time.perf_counter() - wall, time.process_time() - cpu


def time_steps(args, state):
    """Time training steps with and without the teacher text cache."""
    device = args.device
    model, wrapper = state['model'], state['wrapper']
    cached, uncached = state['cached'], state['uncached']
    wall = {'cached': [], 'uncached': []}
    cpu = {'cached': [], 'uncached': []}
    # Alternating the two ways spreads any drift (clocks, other load)
    # evenly over both.
    for step in range(args.warmup + args.steps):
        for way, data in (('cached', cached), ('uncached', uncached)):
            log = {}
            seconds = _timed(
                lambda: log.update(model.train_step(data, wrapper)), device)
            if step >= args.warmup:
                wall[way].append(seconds[0])
                cpu[way].append(seconds[1])
    if not all(math.isfinite(v.item()) for v in log.values()):
        raise RuntimeError(f'non-finite losses: {log}')

    # The part of a step the cache replaces, alone: the teacher's text
    # tower on the batch's sentences against the lookup of their rows.
    teacher, corpus = model.teacher, model.corpus
    texts = uncached['text_tokens'].to(device)
    indices = cached['text_index'].to(device)
    tower = min(
        _timed(lambda: teacher._encode_text(texts), device)[0]
        for _ in range(3))
    lookup = min(
        _timed(lambda: teacher.text_cache(corpus, torch.device(device))[
            indices], device)[0] for _ in range(3))
    result = dict(
        model=args.model, device=device, batch_size=args.batch_size,
        image_size=model.backbone.image_size[0], steps=args.steps,
        warmup=args.warmup, num_sentences=corpus.num_sentences,
        cache_build_s=state['cache_seconds'], threads=torch.get_num_threads(),
        teacher_text_ms=1e3 * tower, cache_lookup_ms=1e3 * lookup)
    for way in wall:
        result[f'{way}_ms'] = 1e3 * statistics.median(wall[way])
        result[f'{way}_min_ms'] = 1e3 * min(wall[way])
        result[f'{way}_cpu_ms'] = 1e3 * statistics.median(cpu[way])
    result['speedup'] = result['uncached_ms'] / result['cached_ms']
    result['speedup_cpu'] = (
        result['uncached_cpu_ms'] / result['cached_cpu_ms'])
    return result


def report_step(r):
    print(f"== (a) CVLP train step: {r['model']}, {r['image_size']} px, "
          f"batch {r['batch_size']}, {r['device']} ({r['threads']} "
          f"threads), median of {r['steps']} steps after {r['warmup']} "
          'warm-up ==')
    print(f"teacher text cache built once: {r['num_sentences']} sentences "
          f"in {r['cache_build_s']:.2f} s")
    print(f"with text cache    : {r['cached_ms']:.1f} ms/step "
          f"(min {r['cached_min_ms']:.1f}, CPU {r['cached_cpu_ms']:.1f})")
    print(f"without text cache : {r['uncached_ms']:.1f} ms/step "
          f"(min {r['uncached_min_ms']:.1f}, CPU "
          f"{r['uncached_cpu_ms']:.1f})")
    print(f"step speed-up (without / with cache): {r['speedup']:.2f}x "
          f"(CPU time {r['speedup_cpu']:.2f}x)")
    print(f"teacher text tower on the batch: {r['teacher_text_ms']:.1f} "
          f"ms; cache lookup: {r['cache_lookup_ms']:.3f} ms")


# ----------------------------------------------------------------------
# (b) logits memory


def _proc_status(field):
    with open('/proc/self/status') as f:
        for line in f:
            if line.startswith(field + ':'):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f'{field} not in /proc/self/status')


class PeakMemory:
    """Peak memory (bytes) above the level at entry."""

    def __init__(self, device):
        self.device = device

    def __enter__(self):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            with open('/proc/self/clear_refs', 'w') as f:
                f.write('5')  # resets VmHWM to the current VmRSS
            self.base = _proc_status('VmRSS')
        return self

    def __exit__(self, *exc):
        if self.device.startswith('cuda'):
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated()
        else:
            peak = _proc_status('VmHWM')
        self.peak = max(0, peak - self.base)


class _GatherRank0(torch.autograd.Function):
    """All-gather as rank 0 sees it: its rows, then the others' (fixed).

    Backward copies the global gradient (the buffer gloo all-reduces) and
    returns this rank's slice.
    """

    @staticmethod
    def forward(ctx, x, others):
        ctx.rows = x.shape[0]
        return torch.cat([x, others])

    @staticmethod
    def backward(ctx, grad):
        return grad.contiguous().clone()[:ctx.rows], None


class SimulatedRank:
    """Run the real losses as rank 0 of ``world`` ranks, in one process.

    Swaps the gathers the loss modules call for concatenations with the
    other ranks' rows, registered per local tensor with :meth:`add`.
    """

    def __init__(self, world):
        self.world = world
        self.others = {}
        self.gathered = 0

    def add(self, local, others):
        self.others[local.data_ptr()] = others

    def _sizes(self, batch_size, group=None):
        return [int(batch_size)] * self.world

    def _with_grad(self, x, sizes=None, group=None):
        self.gathered += 1
        return _GatherRank0.apply(x, self.others[x.data_ptr()])

    def _no_grad(self, x, sizes=None, group=None):
        return torch.cat([x.detach(), self.others[x.data_ptr()]])

    def __enter__(self):
        from vlltr_mm.models.losses import class_wise_contrastive_loss as ccl
        from vlltr_mm.models.losses import clip_distillation_loss as dis
        patches = dict(gather_batch_sizes=self._sizes,
                       gather_with_grad=self._with_grad,
                       gather_no_grad=self._no_grad)
        self.saved = []
        for module in (ccl, dis):
            for name, fn in patches.items():
                if hasattr(module, name):
                    self.saved.append((module, name, getattr(module, name)))
                    setattr(module, name, fn)
        return self

    def __exit__(self, *exc):
        for module, name, fn in self.saved:
            setattr(module, name, fn)


def rank_loss(layout, world, mine, theirs, labels, theirs_labels,
              log_scale, label_smoothing=0.1, loss_lambda=0.5):
    """L_pre (Eq. 8) of rank 0 of ``world`` ranks, with the real losses.

    Args:
        layout (str): ``'local'``: the losses as they run on a rank,
            [B_local, B_global] logits (ours); ``'global'``: every
            embedding gathered once and the losses run on the whole batch,
            [B_global, B_global] logits on each rank (authors').
        world (int): Number of ranks W.
        mine (list[Tensor]): This rank's student image and text and
            teacher image and text embeddings, each [B_local, D].
        theirs (list[Tensor]): The other ranks' rows of the same four,
            each [B_global - B_local, D] (constants).
        labels (Tensor): This rank's labels [B_local].
        theirs_labels (Tensor): The other ranks' labels.
        log_scale (Tensor): Student log 1/τ (0-dim); the teacher's 1/τ is
            1/0.07.
        label_smoothing (float): Of the CCL loss. Defaults to 0.1.
        loss_lambda (float): λ of Eq. 8. Defaults to 0.5.

    Returns:
        Tensor: The 0-dim loss this rank back-propagates.
    """
    from vlltr_mm.models.losses import (
        ClassWiseContrastiveLoss,
        CLIPDistillationLoss,
    )
    ccl = ClassWiseContrastiveLoss(label_smoothing=label_smoothing)
    distill = CLIPDistillationLoss()

    def losses(img, txt, t_img, t_txt, lab):
        scale = log_scale.exp()
        return loss_lambda * ccl(img, txt, lab, scale) + (
            1 - loss_lambda) * distill(img, txt, t_img, t_txt, scale,
                                       1 / 0.07)

    if layout == 'local':
        sim = SimulatedRank(world)
        for a, b in zip(mine, theirs):
            sim.add(a, b)
        sim.add(labels, theirs_labels)
        with sim:
            loss = losses(*mine, labels)
        if sim.gathered == 0:
            # Else the losses ran as one rank: [B_local, B_local] logits.
            raise RuntimeError('the losses no longer gather through their '
                               "modules' gather_with_grad; update "
                               'SimulatedRank')
        return loss
    if layout == 'global':
        feats = [_GatherRank0.apply(a, b) for a, b in zip(mine, theirs)]
        return losses(*feats, torch.cat([labels, theirs_labels]))
    raise ValueError(f"layout must be 'local' or 'global', got {layout!r}")


def random_rank_inputs(world, local, dim, device='cpu', seed=0):
    """Unit-norm embeddings and labels of rank 0 and of the other ranks."""
    import torch.nn.functional as F
    g = torch.Generator().manual_seed(seed)
    total = world * local

    def rows(n):
        return F.normalize(torch.randn(n, dim, generator=g), dim=-1).to(
            device)

    # The student's rows of this rank are leaves with gradients.
    mine = [rows(local).requires_grad_(i < 2) for i in range(4)]
    theirs = [rows(total - local) for _ in range(4)]
    labels = torch.randint(0, 1000, (total, ), generator=g).to(device)
    return mine, theirs, labels[:local], labels[local:]


def memory_case(world, local, dim, layout, device):
    """Peak memory of one rank's L_pre forward + backward.

    Args:
        world (int): Simulated number of ranks W.
        local (int): Images per rank B_local.
        dim (int): Embedding size D.
        layout (str): ``'local'`` or ``'global'``, see :func:`rank_loss`.
        device (str): ``'cpu'`` or ``'cuda'``.

    Returns:
        dict: The case, ``peak_bytes`` above the inputs, the logits shape
        and the analytic bytes of one fp32 logits matrix and of one
        gathered [B_global, D] embedding.
    """
    log_scale = torch.tensor(math.log(1 / 0.07), device=device,
                             requires_grad=True)

    def run(world, local):
        inputs = random_rank_inputs(world, local, dim, device)
        with PeakMemory(device) as mem:
            rank_loss(layout, world, *inputs, log_scale).backward()
        return mem.peak

    # A tiny run first: kernels, thread pools and other lazy
    # initialisation must not count as the loss's memory.
    run(2, 2)
    peak = run(world, local)
    total = world * local
    rows = local if layout == 'local' else total
    return dict(world=world, local=local, dim=dim, layout=layout,
                device=device, peak_bytes=peak, logits_shape=[rows, total],
                logits_bytes=rows * total * 4,
                gathered_bytes=total * dim * 4)


def _memory_worker(spec, conn):
    try:
        spec = dict(spec)
        threads = spec.pop('threads')
        if threads > 0:
            torch.set_num_threads(threads)
        conn.send(memory_case(**spec))
    except BaseException as e:  # report, never hang the parent
        conn.send(dict(spec, error=f'{type(e).__name__}: {e}'))
    finally:
        conn.close()


def start_memory_server():
    """Start the fork server: it imports torch and the losses once (while
    this process builds the CVLP model) and forks one process per case."""
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(['torch', 'vlltr_mm.models.losses'])
    from multiprocessing import forkserver

    # A fixed mmap threshold makes glibc map every large buffer on its own
    # and unmap it when freed, so the resident set follows the live bytes
    # instead of whatever freed chunks the heap happens to keep.
    saved = os.environ.get('MALLOC_MMAP_THRESHOLD_')
    os.environ['MALLOC_MMAP_THRESHOLD_'] = str(128 * 1024)
    try:
        forkserver.ensure_running()
    finally:
        if saved is None:
            del os.environ['MALLOC_MMAP_THRESHOLD_']
        else:
            os.environ['MALLOC_MMAP_THRESHOLD_'] = saved
    return ctx


def bench_memory(args, ctx):
    """Run every (case, layout) in a fresh process."""
    results = []
    for world, local, dim in args.memory_cases:
        for layout in ('local', 'global'):
            spec = dict(world=world, local=local, dim=dim, layout=layout,
                        device=args.device, threads=args.threads)
            recv, send = ctx.Pipe(duplex=False)
            proc = ctx.Process(target=_memory_worker, args=(spec, send))
            proc.start()
            send.close()
            try:
                result = recv.recv()
            except EOFError:
                result = dict(spec, error='worker died (out of memory?)')
            proc.join()
            results.append(result)
    return results


def report_memory(results):
    print('== (b) contrastive logits memory per rank: local x global '
          '(ours) vs global x global (authors), L_ccl + L_dis forward + '
          'backward ==')
    ratios = []
    by_case = {}
    for r in results:
        by_case.setdefault((r['world'], r['local'], r['dim']),
                           {})[r['layout']] = r
    for (world, local, dim), pair in by_case.items():
        total = world * local
        gathered = next(iter(pair.values())).get('gathered_bytes', 0)
        print(f'case {world} ranks x {local} = {total}, D={dim} (one '
              f'gathered [{total}, {dim}] embedding: '
              f'{_size(gathered)}):')
        for layout, name in (('local', 'local x global'),
                             ('global', 'global square')):
            r = pair[layout]
            if 'error' in r:
                print(f'  {name}: FAILED {r["error"]}')
                continue
            shape = 'x'.join(str(v) for v in r['logits_shape'])
            print(f'  {name:14s} [{shape}]: analytic '
                  f"{_size(r['logits_bytes'])} per fp32 logits matrix, "
                  f"measured peak {_size(r['peak_bytes'])}")
        if any('error' in r for r in pair.values()):
            continue
        analytic = pair['global']['logits_bytes'] / pair['local'][
            'logits_bytes']
        measured = pair['global']['peak_bytes'] / max(
            pair['local']['peak_bytes'], 1)
        print(f'  ratio global / local: analytic {analytic:.2f}x, '
              f'measured {measured:.2f}x')
        ratios.append(dict(world=world, local=local, dim=dim,
                           analytic_ratio=analytic,
                           measured_ratio=measured))
    return ratios


# ----------------------------------------------------------------------


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = dict(args=dict(vars(args)))
    ctx = None if args.skip_memory else start_memory_server()
    setup = None if args.skip_step else setup_step(args)
    try:
        if ctx is not None:
            # Before any timed step, so no case runs alongside one.
            out['memory'] = bench_memory(args, ctx)
            out['memory_ratios'] = report_memory(out['memory'])
        if setup is not None:
            out['step'] = time_steps(args, setup)
            report_step(out['step'])
    finally:
        if setup is not None:
            setup['tmp_dir'].cleanup()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    failed = [r for r in out.get('memory', []) if 'error' in r]
    return 1 if failed else 0


if __name__ == '__main__':
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    raise SystemExit(main())
