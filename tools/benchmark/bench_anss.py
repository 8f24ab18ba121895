"""Benchmark AnSS sentence scoring (L_lin, VL-LTR Eq. 2) at full scale.

Scores ``--num-sentences`` random sentence embeddings against
``--num-images`` random pool images (``--num-classes`` classes, sentences
and images spread evenly, class-major) with the chunked
:func:`vlltr_mm.engine.hooks.anss_scoring.lin_loss_scores`, and compares
it with a
per-sentence Python loop (one sentence against the pool at a time, as the
authors' code does). The loop is timed on ``--loop-sentences`` sentences
and extrapolated linearly to all of them; the output says so.

Every case runs in its own subprocess: the time covers scoring only (not
data generation), and the peak memory is that process's maximum resident
set size (``ru_maxrss`` from ``os.wait4``), inputs included; the input
size is printed next to it.

Examples::

    python tools/benchmark/bench_anss.py            # 200k x 20k, D=1024
    python tools/benchmark/bench_anss.py --quick    # seconds, for tests
    python tools/benchmark/bench_anss.py --device cuda
"""
import argparse
import importlib.util
import json
import os
import resource
import subprocess
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.dirname(
    os.path.abspath(__file__))))
TARGET_SECONDS = 180.0
TARGET_BYTES = 4 * 1024**3


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--num-sentences', type=int, default=200_000)
    parser.add_argument('--num-images', type=int, default=20_000)
    parser.add_argument('--num-classes', type=int, default=1000)
    parser.add_argument('--dim', type=int, default=1024)
    parser.add_argument('--chunk-size', type=int, default=4096)
    parser.add_argument('--logit-scale', type=float, default=100.0)
    parser.add_argument(
        '--loop-sentences',
        type=int,
        default=300,
        help='sentences timed with the per-sentence loop (extrapolated)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument(
        '--threads', type=int, default=None, help='torch threads')
    parser.add_argument(
        '--quick', action='store_true', help='tiny sizes (a test run)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--worker', choices=['chunked', 'loop'],
                        help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.quick:
        args.num_sentences, args.num_images = 3000, 400
        args.num_classes, args.dim = 20, 64
        args.chunk_size, args.loop_sentences = 512, 100
    return args


def _inputs(args):
    import torch
    g = torch.Generator().manual_seed(0)
    text = torch.randn(args.num_sentences, args.dim, generator=g)
    images = torch.randn(args.num_images, args.dim, generator=g)
    sent_labels = torch.arange(args.num_sentences) * args.num_classes // \
        args.num_sentences
    img_labels = torch.arange(args.num_images) * args.num_classes // \
        args.num_images
    return (text.to(args.device), images.to(args.device), sent_labels,
            img_labels)


def _sync(device):
    import torch
    if str(device).startswith('cuda'):
        torch.cuda.synchronize()


def _loop_scores(text, images, sent_labels, img_labels, scale):
    """One sentence at a time against the whole pool (the baseline)."""
    import torch
    import torch.nn.functional as F
    images = F.normalize(images, dim=1)
    img_labels = img_labels.to(images.device)
    out = []
    for t, c in zip(text, sent_labels.tolist()):
        logits = scale * (images @ F.normalize(t, dim=0))
        log_prob = logits.log_softmax(dim=0)
        out.append(-log_prob[img_labels == c].mean())
    return torch.stack(out)


def _load_anss():
    """Import ``anss_scoring.py`` alone: the plugin's full import (mmpretrain,
    open_clip, ...) would add ~1 GB of resident memory to the figure."""
    path = os.path.join(REPO, 'vlltr_mm', 'engine', 'hooks',
                        'anss_scoring.py')
    spec = importlib.util.spec_from_file_location('anss', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _peak_rss_bytes():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def worker(args):
    """Run one case in this process and print its JSON result."""
    import torch
    if args.threads:
        torch.set_num_threads(args.threads)
    lin_loss_scores = _load_anss().lin_loss_scores
    text, images, sent_labels, img_labels = _inputs(args)
    result = dict(
        case=args.worker,
        input_bytes=(text.numel() + images.numel()) * 4,
        rss_before_bytes=_peak_rss_bytes(),
        threads=torch.get_num_threads())
    # Warm-up (library initialisation, thread pools) outside the timing.
    lin_loss_scores(text[:8], images, sent_labels[:8], img_labels,
                    args.logit_scale)
    _loop_scores(text[:2], images, sent_labels[:2], img_labels,
                 args.logit_scale)
    if str(args.device).startswith('cuda'):
        torch.cuda.reset_peak_memory_stats()
    _sync(args.device)
    if args.worker == 'chunked':
        start, cpu_start = time.perf_counter(), time.process_time()
        scores = lin_loss_scores(text, images, sent_labels, img_labels,
                                 args.logit_scale, args.chunk_size)
        _sync(args.device)
        result['seconds'] = time.perf_counter() - start
        result['cpu_seconds'] = time.process_time() - cpu_start
        result['finite'] = bool(torch.isfinite(scores).all())
    else:
        n = min(args.loop_sentences, args.num_sentences)
        # Spread the subsample over all classes.
        idx = torch.linspace(0, args.num_sentences - 1, n).long()
        start = time.perf_counter()
        loop = _loop_scores(text[idx.to(text.device)], images,
                            sent_labels[idx], img_labels, args.logit_scale)
        _sync(args.device)
        result['seconds'] = time.perf_counter() - start
        result['sentences'] = n
        ref = lin_loss_scores(text[idx.to(text.device)], images,
                              sent_labels[idx], img_labels,
                              args.logit_scale, args.chunk_size)
        result['max_abs_diff'] = float((loop - ref).abs().max())
    if str(args.device).startswith('cuda'):
        result['cuda_peak_bytes'] = torch.cuda.max_memory_allocated()
    print(json.dumps(result))


def run_case(case, argv):
    """Run ``case`` in a fresh interpreter; add its peak RSS in bytes."""
    cmd = [sys.executable, os.path.abspath(__file__), *argv,
           '--worker', case]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise RuntimeError(f'{case} case failed (exit {proc.returncode})')
    result = json.loads(out.strip().splitlines()[-1])
    result['peak_rss_bytes'] = usage.ru_maxrss * 1024  # KiB on Linux
    return result


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    gib = 1024**3
    print(f'AnSS L_lin scoring: N={args.num_sentences} sentences, '
          f'P={args.num_images} pool images, D={args.dim}, '
          f'C={args.num_classes}, chunk={args.chunk_size}, '
          f'device={args.device}')
    load_before = os.getloadavg()[0]
    chunked = run_case('chunked', argv)
    loop = run_case('loop', argv)
    load_after = os.getloadavg()[0]
    per_sentence = loop['seconds'] / loop['sentences']
    loop_total = per_sentence * args.num_sentences
    speedup = loop_total / chunked['seconds']
    print(f"threads: {chunked['threads']} of {os.cpu_count()} CPUs; "
          f'1-min load average {load_before:.1f} before, {load_after:.1f} '
          'after (other processes slow the wall-clock figures down); '
          f"inputs {chunked['input_bytes'] / gib:.2f} GiB")
    print(f"chunked : {chunked['seconds']:8.1f} s, peak RSS "
          f"{chunked['peak_rss_bytes'] / gib:.2f} GiB (of which "
          f"{chunked['rss_before_bytes'] / gib:.2f} GiB before scoring: "
          'interpreter, torch, inputs)')
    print(f"          CPU time {chunked['cpu_seconds']:.1f} s (all threads)")
    if 'cuda_peak_bytes' in chunked:
        print(f"          CUDA peak {chunked['cuda_peak_bytes'] / gib:.2f} "
              'GiB')
    print(f"loop    : {loop['seconds']:8.2f} s for {loop['sentences']} "
          f'sentences ({per_sentence * 1e3:.2f} ms each), extrapolated to '
          f'{args.num_sentences}: {loop_total:.0f} s')
    print(f'speed-up (chunked vs per-sentence loop, extrapolated): '
          f'{speedup:.1f}x; max |loop - chunked| on the subsample: '
          f"{loop['max_abs_diff']:.2e}")
    on_target = (chunked['seconds'] <= TARGET_SECONDS
                 and chunked['peak_rss_bytes'] < TARGET_BYTES)
    print(f'target (<= {TARGET_SECONDS:.0f} s, < 4 GiB): '
          f"{'met' if on_target else 'NOT met'}"
          f"{' (quick run: sizes are not the target)' if args.quick else ''}")
    results = dict(
        config={k: v for k, v in vars(args).items() if k != 'worker'},
        chunked=chunked,
        loop=loop,
        load_average=(load_before, load_after),
        loop_extrapolated_seconds=loop_total,
        speedup=speedup,
        target_met=on_target)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)
    return results


if __name__ == '__main__':
    main()
