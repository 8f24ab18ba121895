"""The CVLP parts of ``gpu_check.py``: training steps and the Runner.

``part_cvlp_step`` times ``CVLP.train_step`` for every tower x autocast
dtype x teacher mode; ``part_cvlp_runner`` trains the same model through
MMEngine's ``Runner`` on in-memory images. Both run in a child process
forked by ``gpu_check.py``, report every finished row at once through
``ctx.emit`` (so the rows done before a time-out survive the kill) and
skip a row that would overrun the part's deadline (``ctx.skip_reason``).
The model builders and timers of ``bench_cvlp_step.py`` are imported from
that script, not copied.

Not meant to be run directly; see ``gpu_check.py``.
"""
import math
import os
import statistics
import tempfile
import time
from argparse import Namespace

import torch
from gpu_check_common import (
    MIB,
    AutocastOptimWrapper,
    fit_batch,
    free_memory,
    load_script,
    peak_memory,
)
from mmengine.hooks import Hook
from mmengine.optim import build_optim_wrapper
from mmpretrain.structures import DataSample

OPTIMIZER = dict(type='AdamW', lr=1e-4, weight_decay=0.05)

# ----------------------------------------------------------------------
# cvlp_step


def time_train_steps(ctx, model, wrapper, data):
    """Median time of ``model.train_step`` after warm-up, and the peak.

    Args:
        ctx (PartContext): Device and the ``warmup`` / ``steps`` counts.
        model (CVLP): The model, on the device.
        wrapper (OptimWrapper): Steps the optimizer (autocast inside).
        data (dict): One collated batch: ``inputs`` (B uint8 images
            [3, H, W]), ``data_samples``, ``text_tokens`` [B, L] and
            optionally ``text_index`` [B].

    Returns:
        dict: ``step_ms``, ``peak_mib`` (absolute: weights and optimizer
        state included) and ``loss``.
    """
    sizes = ctx.sizes
    for _ in range(sizes['warmup']):
        model.train_step(data, wrapper)
    times = []
    with peak_memory(ctx.device) as mem:
        for _ in range(sizes['steps']):
            ctx.sync()
            start = time.perf_counter()
            log = model.train_step(data, wrapper)
            ctx.sync()
            times.append(time.perf_counter() - start)
    loss = float(log['loss'].detach())  # the total MMEngine parsed
    if not math.isfinite(loss):
        raise FloatingPointError(f'non-finite CVLP loss: {log}')
    return dict(step_ms=1e3 * statistics.median(times),
                peak_mib=(mem.base + mem.peak) / MIB, loss=loss)


def part_cvlp_step(ctx):
    """CVLP training steps: every arch x autocast dtype x teacher mode.

    The batch starts at ``max_batch`` and halves on out-of-memory; the
    one that fits with the full teacher is used for both teacher modes.

    Args:
        ctx (PartContext): Device, sizes and deadline; rows go to
            ``'cases'``.
    """
    bench = load_script('bench_cvlp_step')
    sizes, dtypes = ctx.sizes, ctx.autocast_dtypes()
    last = 0.0
    for arch in sizes['archs']:
        state = bench.setup_step(Namespace(
            model=arch, image_size=None, device=ctx.device,
            batch_size=sizes['max_batch'],
            num_classes=max(1, sizes['max_batch'] // 2)))
        model = state['model']
        image_size = model.backbone.image_size[0]
        try:
            for amp, unsupported in dtypes.items():
                base = dict(model=arch, amp=amp, image_size=image_size)
                reason = unsupported or ctx.skip_reason(last)
                if reason:
                    for teacher in ('full', 'cached'):
                        ctx.emit('cases', dict(
                            base, teacher=teacher, status='skipped',
                            skip='device' if unsupported else 'time',
                            reason=reason))
                    continue
                start = time.monotonic()
                wrapper = AutocastOptimWrapper(
                    state['wrapper'].optimizer, ctx.device, amp)

                def run(batch):
                    cached, full = bench.make_batches(
                        model, batch, image_size)
                    # The full teacher (text tower every step) needs the
                    # most memory, so it decides the batch size.
                    return [('full', time_train_steps(
                        ctx, model, wrapper, full)),
                            ('cached', time_train_steps(
                                ctx, model, wrapper, cached))]

                batch, figures = fit_batch(run, sizes['max_batch'])
                for teacher, fig in figures:
                    ctx.emit('cases', dict(
                        base, teacher=teacher, batch=batch,
                        images_per_s=batch / fig['step_ms'] * 1e3, **fig))
                last = time.monotonic() - start
        finally:
            state['tmp_dir'].cleanup()
            model = state = None  # frees the GPU before the next arch
            free_memory()


# ----------------------------------------------------------------------
# cvlp_runner


class SyntheticClassText:
    """In-memory CVLP training items, as ``ClassTextDataset`` gives them.

    Every item: ``inputs`` (uint8 [3, S, S]), ``text_tokens`` (int64
    [L]), ``text_index`` (its corpus row) and ``data_samples`` (label).
    Built once, so loading costs an index, not a decode.

    Args:
        corpus (ClassTextCorpus): The model's corpus.
        num_items (int): Items; the loader cycles over them.
        image_size (int): Side of the random uint8 images.
    """

    def __init__(self, corpus, num_items, image_size):
        g = torch.Generator().manual_seed(0)
        self.labels = torch.arange(num_items) % corpus.num_classes
        self.index = corpus.sample_indices(self.labels, g)
        self.tokens = corpus.get_tokens(self.index.numpy())
        self.images = torch.randint(
            0, 256, (num_items, 3, image_size, image_size), generator=g,
            dtype=torch.uint8)
        self.metainfo = dict(classes=list(corpus.class_names))

    def __len__(self):
        return len(self.labels)

    def __getitem__(self, i):
        return dict(
            inputs=self.images[i], text_tokens=self.tokens[i],
            text_index=int(self.index[i]),
            data_samples=DataSample().set_gt_label(int(self.labels[i])))


class IterTimer(Hook):
    """Times each train iteration apart from the data loading before it.

    Args:
        ctx (PartContext): For device synchronisation.
    """

    # First before and after each iteration: the other hooks' work after
    # an iteration (logging) counts with the data loading, not the step.
    priority = 'VERY_HIGH'

    def __init__(self, ctx):
        self.ctx, self.iter_s, self.data_s = ctx, [], []
        self._end = None

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        self.ctx.sync()
        self._start = time.perf_counter()
        if self._end is not None:
            self.data_s.append(self._start - self._end)

    def after_train_iter(self, runner, batch_idx, data_batch=None,
                         outputs=None):
        self.ctx.sync()
        self._end = time.perf_counter()
        self.iter_s.append(self._end - self._start)
        self.loss = float(outputs['loss'].detach())


def run_runner(ctx, arch, batch, work_dir):
    """``Runner.train`` of a random CVLP model on synthetic images.

    Args:
        ctx (PartContext): Device and the ``runner_iters`` /
            ``runner_warmup`` counts.
        arch (str): open_clip model name.
        batch (int): Images per iteration.
        work_dir (str): The Runner's work dir (logs, teacher text cache).

    Returns:
        dict: ``iters_per_s`` and ``images_per_s`` over the timed
        iterations (train step only), ``data_ms`` (median gap between
        iterations: data loading and later hooks), ``peak_mib`` and the
        last ``loss``.
    """
    from mmengine.runner import Runner
    bench = load_script('bench_cvlp_step')
    sizes = ctx.sizes
    model = bench.build_cvlp(
        Namespace(model=arch, image_size=None,
                  num_classes=max(1, sizes['max_batch'] // 2)), work_dir)
    image_size = model.backbone.image_size[0]
    dataset = SyntheticClassText(model.corpus, 2 * batch, image_size)
    if ctx.device.startswith('cuda'):
        # What ``tools/train.py --amp`` builds, in bf16.
        wrapper = build_optim_wrapper(model, dict(
            type='AmpOptimWrapper', dtype='bfloat16', optimizer=OPTIMIZER))
    else:
        wrapper = AutocastOptimWrapper(build_optim_wrapper(
            model, dict(optimizer=OPTIMIZER)).optimizer, 'cpu', 'bf16')
    timer = IterTimer(ctx)
    runner = Runner(
        model=model, work_dir=work_dir,
        experiment_name=f'gpu_check_{arch}_{batch}_{os.getpid()}',
        train_dataloader=dict(
            batch_size=batch, num_workers=0, dataset=dataset,
            sampler=dict(type='InfiniteSampler', shuffle=False)),
        train_cfg=dict(by_epoch=False, max_iters=sizes['runner_iters']),
        optim_wrapper=wrapper, custom_hooks=[timer],
        default_hooks=dict(checkpoint=None,
                           logger=dict(type='LoggerHook', interval=10**6)),
        default_scope='mmpretrain', log_level='WARNING',
        randomness=dict(seed=0))
    with peak_memory(ctx.device) as mem:
        runner.train()
    skip = sizes['runner_warmup']
    iter_s = statistics.median(timer.iter_s[skip:])
    if not math.isfinite(timer.loss):
        raise FloatingPointError(f'non-finite loss {timer.loss}')
    return dict(
        iters=len(timer.iter_s), timed_iters=len(timer.iter_s[skip:]),
        iters_per_s=1 / iter_s, images_per_s=batch / iter_s,
        data_ms=1e3 * statistics.median(timer.data_s[max(skip - 1, 0):]),
        peak_mib=(mem.base + mem.peak) / MIB, optim_wrapper=type(
            wrapper).__name__, loss=timer.loss)


def part_cvlp_runner(ctx):
    """Iterations/s of CVLP training through MMEngine's ``Runner``.

    Args:
        ctx (PartContext): Device, sizes, deadline and the batch sizes
            ``cvlp_step`` fitted (``hints['batches']``); rows go to
            ``'cases'``.
    """
    last = 0.0
    for arch in ctx.sizes['archs']:
        base = dict(model=arch, amp='bf16', teacher='cached')
        reason = ctx.skip_reason(last)
        if reason:
            ctx.emit('cases', dict(base, status='skipped', skip='time',
                                   reason=reason))
            continue
        start = time.monotonic()
        # Start at the batch the step part fitted, when it ran.
        first = ctx.hints.get('batches', {}).get(
            f'{arch}/bf16', ctx.sizes['max_batch'])
        with tempfile.TemporaryDirectory() as work_dir:
            batch, fig = fit_batch(
                lambda b: run_runner(ctx, arch, b, work_dir), first)
        free_memory()
        ctx.emit('cases', dict(base, batch=batch, **fig))
        last = time.monotonic() - start
