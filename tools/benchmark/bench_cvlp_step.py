"""Benchmark a CVLP training step and the contrastive logits' memory.

Two measurements, in one run:

(a) Step time. One CVLP model (random init, no download) and one batch
    run full training steps (data preprocessor, forward, L_pre of Eq. 8,
    backward, AdamW step) in two ways that alternate step by step: with
    the sentences' corpus indices, so the frozen teacher reads its text
    embeddings from the cache, and without them, so the teacher runs its
    text tower on every step as the authors' code does. Warm-up steps are
    not timed; the one-off cost of building the cache is reported apart.

(b) Logits memory per rank. The losses of Eqs. 2-3 compare the local rows
    with the global batch. For a simulated rank of W ranks x B_local
    images, the real ``ClassWiseContrastiveLoss`` and
    ``CLIPDistillationLoss`` run forward and backward (i) on this rank's
    [B_local, D] rows against the gathered [B_global, D] embeddings, our
    layout, and (ii) on the gathered [B_global, D] rows, the full global
    square the authors build on every rank. The other ranks' rows are
    constants and the all-gather is replaced by a concatenation whose
    backward copies the global gradient and keeps this rank's slice, as
    the gloo path does, so no process group is needed. Each case runs in
    a fresh process forked from a server that has the modules loaded.
    The peak is the rise of the peak resident set (``VmHWM``, reset
    through ``/proc/self/clear_refs``) on CPU, or of
    ``torch.cuda.max_memory_allocated`` on CUDA, over the level before the
    gathers; the analytic size of one fp32 logits matrix is printed too.

Example::

    python tools/benchmark/bench_cvlp_step.py                # ~3 min
    python tools/benchmark/bench_cvlp_step.py --device cuda --batch-size 64
    python tools/benchmark/bench_cvlp_step.py --quick        # < 30 s
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
    parser.add_argument('--memory-cases', nargs='+', default=None,
                        metavar='WxBxD',
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
        cases = QUICK_MEMORY_CASES if quick else MEMORY_CASES
    else:
        cases = [parse_case(text) for text in args.memory_cases]
    args.memory_cases = [tuple(case) for case in cases]
    for name in ('batch_size', 'steps', 'num_classes'):
        if getattr(args, name) <= 0:
            parser.error(f'--{name.replace("_", "-")} must be positive')
    return args


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

    from vlltr_mm.models.utils.open_clip_loader import build_open_clip
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
        tuple: ``(model, wrapper, cached, uncached, cache_seconds,
        tmp_dir)``; ``tmp_dir`` holds the text cache until cleaned up.
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
    return model, wrapper, cached, uncached, cache_seconds, tmp_dir


def time_steps(args, model, wrapper, cached, uncached, cache_seconds,
               tmp_dir=None):
    """Time training steps with and without the teacher text cache."""
    device = args.device
    times = {'cached': [], 'uncached': []}
    # Alternating the two ways spreads any drift (clocks, other load)
    # evenly over both.
    for step in range(args.warmup + args.steps):
        for way, data in (('cached', cached), ('uncached', uncached)):
            _sync(device)
            start = time.perf_counter()
            log = model.train_step(data, wrapper)
            _sync(device)
            if step >= args.warmup:
                times[way].append(time.perf_counter() - start)
    if not all(math.isfinite(v.item()) for v in log.values()):
        raise RuntimeError(f'non-finite losses: {log}')
    result = dict(
        model=args.model, device=device, batch_size=args.batch_size,
        image_size=model.backbone.image_size[0], steps=args.steps,
        warmup=args.warmup, num_sentences=model.corpus.num_sentences,
        cache_build_s=cache_seconds, threads=torch.get_num_threads())
    for way, values in times.items():
        result[f'{way}_ms'] = 1e3 * statistics.median(values)
        result[f'{way}_min_ms'] = 1e3 * min(values)
    result['speedup'] = result['uncached_ms'] / result['cached_ms']
    return result


def report_step(r):
    print(f"== (a) CVLP train step: {r['model']}, {r['image_size']} px, "
          f"batch {r['batch_size']}, {r['device']} ({r['threads']} "
          f"threads), median of {r['steps']} steps after {r['warmup']} "
          'warm-up ==')
    print(f"teacher text cache built once: {r['num_sentences']} sentences "
          f"in {r['cache_build_s']:.2f} s")
    print(f"with text cache    : {r['cached_ms']:.1f} ms/step "
          f"(min {r['cached_min_ms']:.1f})")
    print(f"without text cache : {r['uncached_ms']:.1f} ms/step "
          f"(min {r['uncached_min_ms']:.1f})")
    print(f"step speed-up (without / with cache): {r['speedup']:.2f}x")
    saved = r['uncached_ms'] - r['cached_ms']
    if saved > 0:
        per_sentence = 1e3 * r['cache_build_s'] / r['num_sentences']
        print(f'teacher text time saved: {saved:.1f} ms/step; the cache '
              f'costs {per_sentence:.1f} ms per corpus sentence once')


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

    def add(self, local, others):
        self.others[local.data_ptr()] = others

    def _sizes(self, batch_size, group=None):
        return [int(batch_size)] * self.world

    def _with_grad(self, x, sizes=None, group=None):
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


def memory_case(world, local, dim, layout, device):
    """Peak memory of L_pre's two losses, forward + backward, on rank 0.

    Args:
        world (int): Simulated number of ranks W.
        local (int): Images per rank B_local.
        dim (int): Embedding size D.
        layout (str): ``'local'`` ([B_local, B_global] logits, ours) or
            ``'global'`` ([B_global, B_global] on every rank, authors').
        device (str): ``'cpu'`` or ``'cuda'``.
    """
    import torch.nn.functional as F

    from vlltr_mm.models.losses import (
        ClassWiseContrastiveLoss,
        CLIPDistillationLoss,
    )
    ccl = ClassWiseContrastiveLoss(label_smoothing=0.1)
    distill = CLIPDistillationLoss()
    log_scale = torch.tensor(math.log(1 / 0.07), device=device,
                             requires_grad=True)

    def run(world, local, seed):
        """One rank's L_pre forward and backward; returns a peak meter."""
        g = torch.Generator().manual_seed(seed)
        total = world * local

        def rows(n):
            return F.normalize(torch.randn(n, dim, generator=g),
                               dim=-1).to(device)

        # This rank's embeddings (the student's are leaves with
        # gradients) and every other rank's, on the device beforehand.
        mine = [rows(local).requires_grad_(i < 2) for i in range(4)]
        theirs = [rows(total - local) for _ in range(4)]
        labels = torch.randint(0, 1000, (total, ), generator=g).to(device)

        def loss_fn(img, txt, t_img, t_txt, lab):
            scale = log_scale.exp()
            loss = 0.5 * ccl(img, txt, lab, scale) + 0.5 * distill(
                img, txt, t_img, t_txt, scale, 1 / 0.07)
            loss.backward()

        with PeakMemory(device) as mem:
            if layout == 'local':
                sim = SimulatedRank(world)
                for a, b in zip(mine, theirs):
                    sim.add(a, b)
                sim.add(labels, labels[local:])
                with sim:
                    loss_fn(*mine, labels[:local])
            else:
                # The authors gather every embedding once and build the
                # full [B_global, B_global] logits on each rank.
                loss_fn(*[_GatherRank0.apply(a, b)
                          for a, b in zip(mine, theirs)], labels)
        return mem

    # Untimed tiny run first: kernels, thread pools and other lazy
    # initialisation must not count as the loss's memory.
    run(2, 2, seed=1)
    mem = run(world, local, seed=0)
    total = world * local
    rows_ = local if layout == 'local' else total
    return dict(world=world, local=local, dim=dim, layout=layout,
                device=device, peak_bytes=mem.peak,
                logits_shape=[rows_, total],
                logits_bytes=rows_ * total * 4)


def _memory_worker(spec, conn):
    try:
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
    forkserver.ensure_running()
    return ctx


def bench_memory(args, ctx):
    """Run every (case, layout) in a fresh process."""
    results = []
    for world, local, dim in args.memory_cases:
        for layout in ('local', 'global'):
            spec = dict(world=world, local=local, dim=dim, layout=layout,
                        device=args.device)
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
        print(f'case {world} ranks x {local} = {total}, D={dim}:')
        for layout, name in (('local', 'local x global'),
                             ('global', 'global square')):
            r = pair[layout]
            if 'error' in r:
                print(f'  {name}: FAILED {r["error"]}')
                continue
            shape = 'x'.join(str(v) for v in r['logits_shape'])
            print(f'  {name:14s} [{shape}]: analytic '
                  f"{r['logits_bytes'] / MIB:.2f} MiB per fp32 logits "
                  f"matrix, measured peak {r['peak_bytes'] / MIB:.2f} MiB")
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
    out = dict(args=dict(vars(args)))
    ctx = None if args.skip_memory else start_memory_server()
    setup = None if args.skip_step else setup_step(args)
    try:
        if ctx is not None:
            # Before any timed step, so no case runs alongside one.
            out['memory'] = bench_memory(args, ctx)
            out['memory_ratios'] = report_memory(out['memory'])
        if setup is not None:
            out['step'] = time_steps(args, *setup)
            report_step(out['step'])
    finally:
        if setup is not None:
            setup[-1].cleanup()
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    failed = [r for r in out.get('memory', []) if 'error' in r]
    return 1 if failed else 0


if __name__ == '__main__':
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    raise SystemExit(main())
