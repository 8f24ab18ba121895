"""Benchmark the contrastive logits' memory per rank (VL-LTR Eqs. 2-3).

The losses of Eqs. 2-3 compare the local rows with the global batch. For
rank 0 of W ranks x B_local images, the real ``ClassWiseContrastiveLoss``
and ``CLIPDistillationLoss`` run forward and backward (``'local'``) as on
a rank: [B_local, B_global] logits against the gathered [B_global, D]
embeddings, ours; and (``'global'``) on the gathered [B_global, D] rows:
the full [B_global, B_global] square the authors build on every rank. The
other ranks' rows are constants and the all-gather is a concatenation
whose backward copies the global gradient and keeps this rank's slice, as
the gloo path does, so no process group is needed: subclasses of the two
losses override their collectives (``rank0_losses.py``). Each case
runs in a fresh process forked from a server that has the modules loaded,
with a fixed glibc mmap threshold so that freed buffers leave the resident
set. The peak is measured by ``bench_common.PeakMemory`` over the level
with the inputs allocated; the analytic sizes of one fp32 logits matrix
and of one gathered embedding are printed too.

Example::

    python tools/benchmark/bench_logits_memory.py          # ~1 min
    python tools/benchmark/bench_logits_memory.py --device cuda
    python tools/benchmark/bench_logits_memory.py --quick  # ~5 s
"""
import argparse
import json
import math
import multiprocessing as mp
import os

import torch
from bench_common import MIB, PeakMemory, add_device_args, resolve_device
from rank0_losses import random_rank_inputs, rank_loss

# (ranks W, local batch B_local, embedding size D): the authors' setting
# (8 GPUs x 256, CLIP RN50) and a larger global batch.
MEMORY_CASES = ((8, 256, 1024), (32, 128, 1024))
QUICK_MEMORY_CASES = ((4, 128, 64), (8, 64, 64))


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


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    add_device_args(parser)
    parser.add_argument('--memory-cases', nargs='+', default=None,
                        type=parse_case, metavar='WxBxD',
                        help='ranks x local batch x dim (default '
                        '8x256x1024 32x128x1024)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, a sanity run')
    parser.add_argument('--json', help='also write the results here')
    args = parser.parse_args(argv)
    resolve_device(args)
    if args.memory_cases is None:
        args.memory_cases = list(
            QUICK_MEMORY_CASES if args.quick else MEMORY_CASES)
    return args


def _size(num_bytes):
    """Bytes as MiB, or KiB below 0.1 MiB."""
    if num_bytes < 0.1 * MIB:
        return f'{num_bytes / 1024:.1f} KiB'
    return f'{num_bytes / MIB:.2f} MiB'


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
    """Start the fork server: it imports torch and the losses once and
    forks one process per case."""
    ctx = mp.get_context('forkserver')
    ctx.set_forkserver_preload(['torch', 'vlltr_mm.models.losses',
                                'rank0_losses'])
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
    print('== contrastive logits memory per rank: local x global '
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


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = dict(args=dict(vars(args)))
    out['memory'] = bench_memory(args, start_memory_server())
    out['memory_ratios'] = report_memory(out['memory'])
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(out, f, indent=1)
    return 1 if any('error' in r for r in out['memory']) else 0


if __name__ == '__main__':
    raise SystemExit(main())
