"""Benchmark the LGR head: efficient form against the direct form.

For ImageNet-LT size (C=1000, M=64, D=1024, B=128) and iNaturalist size
(C=8142, M=64, D=1024, B=128) it measures, per form, one training step of
the head (forward, both losses of Eq. 9, backward to every parameter and to
the input feature), one inference forward, and the peak memory of each,
then prints direct / efficient ratios.

Every measurement runs in a fresh subprocess (in this process with
``--quick`` or ``--in-process``). Times are wall clock and, on CPU, also
process CPU time, which other load on the machine disturbs less; ratios
use CPU time on CPU and wall time on CUDA. Peak memory is the rise over
the level before the step (``bench_common.PeakMemory``): parameters,
anchors and the efficient form's cached anchor statistics exist before
it, so only activations, gradients and temporaries count. The efficient
form runs with ``class_chunk=1024`` (``--class-chunk``); at iNat size it
is also measured unchunked.

The direct form at iNat size needs ~29 GiB at B=128, more than a 24 GB CPU
machine can give, so on CPU it runs at B=16 (``--direct-batch``) and the
efficient form is measured at that batch too (equal-batch ratios). For
B=128 the script prints lower bounds (direct time extrapolated as
``direct(16) + efficient(128) - efficient(16)``, since its per-image work
is at least the efficient form's; direct peak memory taken as
``direct(16)``) and an estimate scaled from the ImageNet-LT direct run at
B=128 by the class count (every activation of both forms has a class
axis).

Example::

    python tools/benchmark/bench_lgr_head.py              # ~4 min, 2 cores
    python tools/benchmark/bench_lgr_head.py --device cuda
    python tools/benchmark/bench_lgr_head.py --quick      # tiny sanity run
"""
import argparse
import json
import os
import time

from bench_common import run_in_subprocess

SIZES = {  # name: (classes C, anchors M, dim D, batch B)
    'imagenet-lt': (1000, 64, 1024, 128),
    'inat2018': (8142, 64, 1024, 128),
}
QUICK_SIZES = {'tiny': (40, 8, 32, 16)}
# Sizes whose direct form runs at a reduced batch on CPU.
LARGE = ('inat2018', 'tiny')
TARGET_TIME, TARGET_MEMORY = 5.0, 10.0


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cpu', help='cpu or cuda')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes only, a sanity run of seconds')
    parser.add_argument('--sizes', nargs='+', choices=sorted(SIZES),
                        help='subset of sizes (default: all)')
    parser.add_argument('--direct-batch', type=int, default=None,
                        help='batch of the direct form (default: the full '
                        'batch, except B/8 = 16 at iNat size on CPU)')
    parser.add_argument('--class-chunk', type=int, default=None,
                        help='class_chunk of the efficient head, 0 for none '
                        '(default 1024, 16 with --quick); sizes with more '
                        'classes also get an unchunked efficient run')
    parser.add_argument('--repeats', type=int, default=None,
                        help='timed repetitions, the fastest is kept '
                        '(default 1 on CPU, 3 on CUDA)')
    parser.add_argument('--timeout', type=float, default=900,
                        help='seconds allowed per measurement subprocess')
    parser.add_argument('--in-process', action='store_true',
                        help='measure in this process instead of one '
                        'subprocess per case (default with --quick)')
    parser.add_argument('--json', help='also write the results here')
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def run_worker(spec):
    """Measure one (size, impl, batch) case; returns a result dict."""
    import torch
    from bench_common import PeakMemory, build_lgr_head, sync
    from mmpretrain.structures import DataSample
    device = spec['device']
    num_classes, num_anchors, dim = spec['C'], spec['M'], spec['D']
    batch, impl = spec['B'], spec['impl']

    def build(c, m, d):
        head = build_lgr_head(impl, c, d, num_anchors=m,
                              class_chunk=spec['class_chunk']).to(device)
        anchors = torch.randn(c, m, d, device=device)
        mask = torch.rand(c, m, device=device) > 0.25
        mask[:, 0] = True  # some classes have fewer than M sentences
        head.set_anchors(anchors, mask, logit_scale=100.0)
        return head

    def step(head, x, samples):
        head.zero_grad(set_to_none=True)
        x.grad = None
        losses = head.loss((x, ), samples)
        (losses['loss_image'] + losses['loss_text']).backward()

    torch.manual_seed(0)
    tiny = build(4, 2, 8)  # warms up kernels and allocator paths
    xt = torch.randn(2, 8, device=device, requires_grad=True)
    step(tiny, xt, [DataSample().set_gt_label(0)] * 2)
    with torch.no_grad():
        tiny((xt, ))
    head = build(num_classes, num_anchors, dim)
    x = torch.randn(batch, dim, device=device, requires_grad=True)
    labels = torch.randint(0, num_classes, (batch, )).tolist()
    samples = [DataSample().set_gt_label(y) for y in labels]
    with torch.no_grad():
        head((x[:1], ))  # builds the efficient form's anchor statistics
    sync(device)
    result = dict(spec)
    for mode in ('infer', 'train'):
        walls, cpus = [], []
        with PeakMemory(device) as mem:
            for _ in range(spec['repeats']):
                wall, cpu = time.perf_counter(), time.process_time()
                if mode == 'train':
                    step(head, x, samples)
                else:
                    with torch.no_grad():
                        head((x, ))
                sync(device)
                walls.append(time.perf_counter() - wall)
                cpus.append(time.process_time() - cpu)
        result[f'{mode}_wall'] = min(walls)
        result[f'{mode}_cpu'] = min(cpus)
        result[f'{mode}_peak'] = mem.peak
    return result


def class_chunk(args):
    if args.class_chunk is None:
        return 16 if args.quick else 1024
    return args.class_chunk or None


def plan(args):
    """Cases to measure: (size, impl, batch, class_chunk) specs."""
    cuda = args.device.startswith('cuda')
    repeats = args.repeats or (3 if cuda else 1)
    sizes = QUICK_SIZES if args.quick else {
        k: v
        for k, v in SIZES.items() if not args.sizes or k in args.sizes
    }
    chunk = class_chunk(args)
    specs = []
    for name, (c, m, d, b) in sizes.items():
        direct_b = b
        if name in LARGE and not cuda:
            direct_b = min(b, args.direct_batch or max(1, b // 8))
        elif args.direct_batch:
            direct_b = min(b, args.direct_batch)
        base = dict(size=name, C=c, M=m, D=d, device=args.device,
                    repeats=repeats)
        specs.append(dict(base, impl='efficient', B=b, class_chunk=chunk))
        if chunk is not None and c > chunk:
            # The unchunked form too, to show what chunking buys.
            specs.append(dict(base, impl='efficient', B=b, class_chunk=None))
        if direct_b != b:
            specs.append(
                dict(base, impl='efficient', B=direct_b, class_chunk=chunk))
        specs.append(dict(base, impl='direct', B=direct_b, class_chunk=None))
    return specs


def _ratio(direct, efficient, memory=False):
    # RSS deltas below 1 MiB are page-level noise, not a measurement.
    if memory and min(direct, efficient) < 2**20:
        return 'n/a (< 1 MiB)'
    return f'{direct / max(efficient, 1e-9):.1f}x'


def report(results, chunk):
    """Print the table and the ratios; returns the iNat verdicts."""
    clock = 'wall' if results and results[0]['device'].startswith(
        'cuda') else 'cpu'
    print(f"{'size':<12}{'impl':<10}{'chunk':>6}{'B':>5}"
          f"{'train s':>9}{'(cpu s)':>9}{'infer s':>9}{'(cpu s)':>9}"
          f"{'train MiB':>11}{'infer MiB':>11}")
    for r in results:
        head = (f"{r['size']:<12}{r['impl']:<10}"
                f"{str(r['class_chunk'] or '-'):>6}{r['B']:>5}")
        if 'error' in r:
            print(f"{head}  FAILED: {r['error']}")
            continue
        print(f"{head}{r['train_wall']:>9.3f}{r['train_cpu']:>9.3f}"
              f"{r['infer_wall']:>9.3f}{r['infer_cpu']:>9.3f}"
              f"{r['train_peak'] / 2**20:>11.1f}"
              f"{r['infer_peak'] / 2**20:>11.1f}")
    ok = [r for r in results if 'error' not in r]
    print(f'\nRatios direct / efficient (efficient with class_chunk='
          f'{chunk}); times by {clock} time'
          + (' (process CPU time: robust to other load on the machine)'
             if clock == 'cpu' else '') + ':')
    verdicts = {}
    for size in dict.fromkeys(r['size'] for r in results):
        direct = [r for r in ok if r['size'] == size and r['impl'] ==
                  'direct']
        eff = {r['B']: r for r in ok if r['size'] == size
               and r['impl'] == 'efficient' and r['class_chunk'] == chunk}
        if not direct or not eff:
            print(f'  {size}: incomplete, see the failures above')
            continue
        d, full = direct[0], max(eff)
        db = d['B']
        if db not in eff:
            print(f'  {size}: incomplete, see the failures above')
            continue
        e = eff[db]
        print(f"  {size}, equal batch B={db}: train "
              f"{_ratio(d['train_' + clock], e['train_' + clock])} "
              f"(wall {_ratio(d['train_wall'], e['train_wall'])}), "
              f"inference {_ratio(d['infer_' + clock], e['infer_' + clock])}"
              f" (wall {_ratio(d['infer_wall'], e['infer_wall'])}), "
              f"train peak memory "
              f"{_ratio(d['train_peak'], e['train_peak'], True)}, "
              f"inference peak memory "
              f"{_ratio(d['infer_peak'], e['infer_peak'], True)}")
        verdicts[size] = _full_batch(size, d, e, eff[full], ok, clock)
    for size, kinds in verdicts.items():
        if size != 'inat2018':
            continue
        print(f'\nTargets, {size} train step at B={max(eff)}: >= '
              f'{TARGET_TIME:.0f}x faster, >= {TARGET_MEMORY:.0f}x less '
              f'peak memory')
        for kind, (time_ratio, mem_ratio) in kinds.items():
            time_ok = 'MET' if time_ratio >= TARGET_TIME else 'MISSED'
            mem_ok = 'MET' if mem_ratio >= TARGET_MEMORY else 'MISSED'
            print(f'  {kind}: time {time_ratio:.1f}x {time_ok}, memory '
                  f'{mem_ratio:.1f}x {mem_ok}')
    return verdicts


def _full_batch(size, d, e, ef, ok, clock):
    """Train time / peak ratios at the full batch, measured or estimated.

    ``d`` and ``e`` are the direct and efficient runs at the direct batch,
    ``ef`` the efficient run at the full batch.
    """
    key = 'train_' + clock
    if d['B'] == ef['B']:
        return {'measured': (d[key] / ef[key],
                             d['train_peak'] / max(ef['train_peak'], 1))}
    # The direct form's per-image work is at least the efficient form's,
    # and its peak memory grows with the batch.
    bound = ((d[key] + ef[key] - e[key]) / ef[key],
             d['train_peak'] / max(ef['train_peak'], 1))
    print(f"  {size}, B={ef['B']}: direct run at the reduced batch "
          f"B={d['B']} only; lower bounds: train time >= {bound[0]:.1f}x, "
          f'train peak memory >= {bound[1]:.1f}x')
    out = {'lower bound': bound}
    # Every activation of either form has a class axis, so a direct run at
    # the full batch with the same M and D scales with C.
    for r in ok:
        if (r['impl'] == 'direct' and r['B'] == ef['B'] and r['size'] != size
                and (r['M'], r['D']) == (ef['M'], ef['D'])):
            scale = ef['C'] / r['C']
            est = (r[key] * scale / ef[key],
                   r['train_peak'] * scale / max(ef['train_peak'], 1))
            print(f"  {size}, B={ef['B']}: direct scaled from {r['size']} "
                  f"at B={ef['B']} by C ({scale:.2f}x): train time "
                  f'~{est[0]:.1f}x, train peak memory ~{est[1]:.1f}x')
            out[f"scaled from {r['size']}"] = est
            break
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        print('RESULT ' + json.dumps(run_worker(json.loads(args.worker))))
        return
    import torch
    print(f'LGR head benchmark: device={args.device}, torch '
          f'{torch.__version__}, {torch.get_num_threads()} threads, '
          f'{os.cpu_count()} CPUs')
    results = []
    for spec in plan(args):
        start = time.perf_counter()
        if args.in_process or args.quick:
            results.append(run_worker(spec))
        else:
            results.append(run_in_subprocess(__file__, spec, args.timeout))
        print(f"  measured {spec['size']} {spec['impl']} B={spec['B']} "
              f"class_chunk={spec['class_chunk']} in "
              f'{time.perf_counter() - start:.0f} s', flush=True)
    print()
    report(results, class_chunk(args))
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(results, f, indent=2)


if __name__ == '__main__':
    main()
