"""Benchmark a CVLP training step with and without the teacher text cache.

One CVLP model (random init, no download) and one batch run full training
steps (data preprocessor, forward, L_pre of Eq. 8, backward, AdamW step)
in two ways that alternate step by step: with the sentences' corpus
indices, so the frozen teacher reads its text embeddings from the cache,
and without them, so the teacher runs its text tower on every step as the
authors' code does. Warm-up steps are not timed; the one-off cost of
building the cache is reported apart, and so are the teacher's text tower
on the batch and the cache lookup that replaces it. On CPU the run uses
one thread by default: on a small machine shared with other work, threads
that wait for each other make step times scatter several-fold.

The logits memory of the losses is measured by ``bench_logits_memory.py``.

Example::

    python tools/benchmark/bench_cvlp_step.py                # ~1 min
    python tools/benchmark/bench_cvlp_step.py --device cuda --batch-size 16
    python tools/benchmark/bench_cvlp_step.py --quick        # ~5 s
"""
import argparse
import json
import math
import os
import statistics
import tempfile
import time

import torch
from bench_common import add_device_args, resolve_device, sync


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
    add_device_args(parser)
    parser.add_argument('--quick', action='store_true',
                        help='tiny model and sizes, a sanity run')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    resolve_device(args)
    quick = args.quick
    if args.model is None:
        args.model = 'vlltr-tiny-rn' if quick else 'RN50'
    if args.batch_size is None:
        args.batch_size = 4 if quick else 8
    if args.steps is None:
        args.steps = 3 if quick else 5
    if args.num_classes is None:
        args.num_classes = args.batch_size
    for name in ('batch_size', 'steps', 'num_classes'):
        if getattr(args, name) <= 0:
            parser.error(f'--{name.replace("_", "-")} must be positive')
    return args


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
    sync(device)
    start = time.perf_counter()
    model.teacher.text_cache(model.corpus, torch.device(device))
    sync(device)
    cache_seconds = time.perf_counter() - start
    return dict(model=model, wrapper=wrapper, cached=cached,
                uncached=uncached, cache_seconds=cache_seconds,
                tmp_dir=tmp_dir)


def _timed(fn, device):
    """Wall and CPU seconds of ``fn()``."""
    sync(device)
    wall, cpu = time.perf_counter(), time.process_time()
    fn()
    sync(device)
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
    print(f"== CVLP train step: {r['model']}, {r['image_size']} px, "
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


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    setup = setup_step(args)
    try:
        out = dict(args=dict(vars(args)), step=time_steps(args, setup))
    finally:
        setup['tmp_dir'].cleanup()
    report_step(out['step'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == '__main__':
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    raise SystemExit(main())
