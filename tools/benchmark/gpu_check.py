"""Measure VL-LTR's real-size hot paths on one GPU within a time budget.

Five parts, each in a child process forked from this one (so a part that
overruns is killed, and a crash or an out-of-memory error stays in it):

``cvlp_step``
    CVLP training steps (random-init open_clip ``RN50`` and ``ViT-B-16``,
    224 px) under bf16 autocast and fp16 autocast with a ``GradScaler``,
    with the teacher's cached sentence embeddings and with the full teacher
    (its text tower on every step); distillation is on in both. The batch
    starts at 256 and halves on out-of-memory. Images/s and peak memory.
``cvlp_runner``
    The same model trained by MMEngine's ``Runner`` (bf16) for a few dozen
    iterations on in-memory synthetic images: iterations/s without data
    loading, and the data-loading time apart.
``lgr_head``
    The LGR head at ImageNet-LT and iNat sizes, efficient vs direct form:
    train-step time and peak memory, and their logits under autocast
    against float32.
``anss``
    AnSS scoring (``lin_loss_scores``) of 200k sentences x 20k images,
    D=1024: time and peak memory.
``correctness``
    Both CVLP losses and their gradients under autocast against float32
    on the same features (the losses run in float32: no gap of their own),
    the largest relative gap of the tower gradients of a whole CVLP step
    under autocast against float32, and one optimizer step of CVLP and of
    LGR under autocast leaving finite weights.
``zero_shot`` (only with ``--clip-weights``)
    ``tools/analysis/zero_shot.py``: the initial CLIP's zero-shot test
    accuracy with a CVLP config (default the ResNet-50 ImageNet-LT one),
    the local CLIP file as both towers' weights and the dataset under
    ``--data-root``, against the paper's figure (a check, +-2 points).
    Without ``--clip-weights`` it is recorded as skipped with the reason.

A part starts only while the global ``--budget`` lasts; it runs for at most
``--part-timeout`` seconds or the rest of the budget, and inside it a case
that would overrun is skipped. Whatever does not fit is recorded as
``skipped`` with its reason, an exception as ``error``; the next part runs
either way. The exit code is 1 if a correctness check failed (or, with
``--strict``, if any part is not ``ok``, a ``zero_shot`` part skipped for
want of ``--clip-weights`` excepted).

Writes ``gpu_check.json`` (``device``, ``torch``, ``cuda``, ``quick``,
``started``, ``elapsed_s``, ``parts``: name -> ``status``, ``reason``,
``elapsed_s``, ``results``) and ``gpu_check.md`` (a table per part) to
``--out-dir``. No network and no pretrained weights are needed (but for
the optional ``zero_shot`` part).
The parts live in ``gpu_check_cvlp.py`` (``cvlp_step``, ``cvlp_runner``),
``gpu_check_lgr_anss.py`` (``lgr_head``, ``anss``),
``gpu_check_correctness.py`` and ``gpu_check_zero_shot.py``, their sizes
and shared helpers in ``gpu_check_common.py``; ``gpu_check_process.py``
runs a part in its child process and ``gpu_check_report.py`` writes the
summaries.


Examples::

    python tools/benchmark/gpu_check.py --device cuda     # < 8 min, H200
    python tools/benchmark/gpu_check.py --device cpu --quick   # ~20 s
    python tools/benchmark/gpu_check.py --device cuda --parts anss lgr_head
    python tools/benchmark/gpu_check.py --device cuda --parts zero_shot \
        --clip-weights data/clip/RN50.pt --data-root data/imagenet \
        --part-timeout 600 --budget 600
"""
import argparse
import datetime
import os
import os.path as osp
import sys
import time

HERE = osp.dirname(osp.abspath(__file__))
# The sibling modules are imported by name; a script's folder is on
# sys.path only when it is run, not when it is loaded by path.
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from gpu_check_process import run_part  # noqa: E402
from gpu_check_report import failed_checks, write_report  # noqa: E402

PART_NAMES = ('cvlp_step', 'cvlp_runner', 'lgr_head', 'anss', 'correctness',
              'zero_shot')
ZERO_SHOT_CONFIG = osp.join(osp.dirname(osp.dirname(HERE)), 'configs',
                            'vlltr', 'cvlp_r50_imagenet-lt.py')
# Below this many seconds a part cannot even fork and build its inputs.
MIN_START_S = 2.0


def parse_args(argv=None):
    """Command-line options.

    Args:
        argv (list[str], optional): Defaults to None (``sys.argv``).

    Returns:
        Namespace: The options.
    """
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--device', default='cuda', choices=('cuda', 'cpu'),
                        help='where to measure (default cuda)')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes: the same code, for CI on a CPU')
    parser.add_argument('--out-dir', default='work_dirs/gpu_check',
                        help='where gpu_check.json and gpu_check.md go')
    parser.add_argument('--budget', type=float, default=420.0,
                        help='seconds for all parts together (default 420)')
    parser.add_argument('--part-timeout', type=float, default=180.0,
                        help='seconds one part may run (default 180)')
    parser.add_argument('--parts', nargs='+', choices=PART_NAMES,
                        default=list(PART_NAMES),
                        help='parts to run, in this order (default: all)')
    parser.add_argument('--strict', action='store_true',
                        help='exit 1 unless every part is ok (zero_shot '
                        'without --clip-weights excepted)')
    zero_shot = parser.add_argument_group(
        'zero_shot part (runs only with --clip-weights)')
    zero_shot.add_argument(
        '--clip-weights', help='local CLIP file (e.g. data/clip/RN50.pt) '
        'loaded into both towers')
    zero_shot.add_argument(
        '--data-root', help="the dataset's root (the config's data_root, "
        'e.g. data/imagenet)')
    zero_shot.add_argument(
        '--text-root', help="the class text's root (the config's "
        'text_root)')
    zero_shot.add_argument(
        '--zero-shot-config', default=ZERO_SHOT_CONFIG,
        help='a CVLP config (default '
        'configs/vlltr/cvlp_r50_imagenet-lt.py)')
    zero_shot.add_argument(
        '--zero-shot-options', nargs='+', default=[], metavar='KEY=VALUE',
        help='more --cfg-options for the zero-shot run')
    args = parser.parse_args(argv)
    if args.budget < 0 or args.part_timeout < 0:
        parser.error('--budget and --part-timeout must be >= 0')
    for name in ('clip_weights', 'zero_shot_config'):
        path = getattr(args, name)
        if path is not None and not osp.isfile(path):
            parser.error(f'--{name.replace("_", "-")} {path}: no such file')
    return args


def load_parts():
    """Import the parts (heavy: torch, MMEngine, vlltr_mm).

    Called by :func:`main` only after it has set the environment that
    torch reads on import.

    Returns:
        tuple: The ``gpu_check_common`` module (``FULL``, ``QUICK``,
        ``probe_device``) and ``{part name: part function}``.
    """
    import gpu_check_common
    import gpu_check_correctness
    import gpu_check_cvlp
    import gpu_check_lgr_anss
    import gpu_check_zero_shot
    return gpu_check_common, dict(
        cvlp_step=gpu_check_cvlp.part_cvlp_step,
        cvlp_runner=gpu_check_cvlp.part_cvlp_runner,
        lgr_head=gpu_check_lgr_anss.part_lgr_head,
        anss=gpu_check_lgr_anss.part_anss,
        correctness=gpu_check_correctness.part_correctness,
        zero_shot=gpu_check_zero_shot.part_zero_shot)


def skipped(reason, **extra):
    """The record of a part that did not start, because of ``reason``."""
    return dict(status='skipped', reason=reason, elapsed_s=0.0, results={},
                **extra)


def zero_shot_inputs(args):
    """What the ``zero_shot`` part runs on (None without weights).

    Args:
        args (Namespace): The options.

    Returns:
        dict | None: The inputs of ``gpu_check_zero_shot.zero_shot_argv``
        and the tool's ``work_dir`` (under ``--out-dir``).
    """
    if args.clip_weights is None:
        return None
    return dict(config=args.zero_shot_config,
                clip_weights=args.clip_weights, data_root=args.data_root,
                text_root=args.text_root, options=args.zero_shot_options,
                work_dir=osp.join(args.out_dir, 'zero_shot'))


def main(argv=None):
    """Run the parts, write the JSON and Markdown summaries.

    Args:
        argv (list[str], optional): Defaults to None (``sys.argv``).

    Returns:
        int: 1 if a correctness check failed (or, with ``--strict``, a
        part is not ok), else 0.
    """
    args = parse_args(argv)
    if args.device == 'cpu':
        # The Runner and the benchmarks move models to CUDA when they see
        # it; a CPU check must not touch it.
        os.environ['CUDA_VISIBLE_DEVICES'] = ''
        # On a small shared machine, threads that spin-wait for each other
        # make CPU times scatter several-fold (set before torch loads).
        os.environ.setdefault('OMP_NUM_THREADS', '1')
    os.environ.setdefault('TOKENIZERS_PARALLELISM', 'false')
    # MMEngine asks torch.cuda.is_available() on import; by default that
    # initialises the CUDA driver here and no forked part could use CUDA.
    # The NVML-based check leaves it uninitialised (set before torch
    # loads).
    os.environ['PYTORCH_NVML_BASED_CUDA_CHECK'] = '1'
    start = time.monotonic()
    started = datetime.datetime.now(datetime.timezone.utc)
    common, part_fns = load_parts()
    import torch
    if torch.cuda.is_initialized():
        raise RuntimeError('CUDA was initialised on import; forked parts '
                           'could not use it')
    sizes = common.QUICK if args.quick else common.FULL
    report = dict(
        device=None, torch=torch.__version__, cuda=torch.version.cuda,
        quick=args.quick, started=started.isoformat(timespec='seconds'),
        elapsed_s=None, budget_s=args.budget,
        part_timeout_s=args.part_timeout, argv=sys.argv[1:], parts={},
        failed_checks=[])
    os.makedirs(args.out_dir, exist_ok=True)
    try:
        # The device is read in a child too: CUDA initialised here would
        # be unusable in every part forked afterwards.
        probe = run_part(common.probe_device, 60.0, args.device, args.quick)
        info = probe['results'] or {}
        report['device'] = info.get('name') or f"{args.device} (unknown)"
        report['device_info'] = info
        hints = dict(zero_shot=zero_shot_inputs(args))
        for name in args.parts:
            left = args.budget - (time.monotonic() - start)
            limit = min(args.part_timeout, left)
            if name == 'zero_shot' and hints['zero_shot'] is None:
                # Optional: --strict does not count it.
                report['parts'][name] = skipped(
                    'no --clip-weights: the zero-shot check needs a local '
                    'CLIP file (e.g. --clip-weights data/clip/RN50.pt '
                    '--data-root data/imagenet)', optional=True)
            elif limit < MIN_START_S:
                report['parts'][name] = skipped(
                    f'would not fit: {max(left, 0):.1f} s of the '
                    f'{args.budget:.0f} s budget left and a '
                    f'{args.part_timeout:.0f} s part timeout; a part needs '
                    f'at least {MIN_START_S:.0f} s to start')
            elif probe['status'] != 'ok':
                report['parts'][name] = dict(
                    skipped('device probe failed'), status='error',
                    reason=f"device probe failed: {probe['reason']}")
            else:
                print(f'[gpu_check] {name}: up to {limit:.3g} s',
                      flush=True)
                report['parts'][name] = run_part(
                    part_fns[name], limit, args.device, args.quick, sizes,
                    hints)
            part = report['parts'][name]
            print(f"[gpu_check] {name}: {part['status']} in "
                  f"{part['elapsed_s']:.1f} s"
                  + (f" ({part['reason']})" if part['reason'] else ''),
                  flush=True)
            if name == 'cvlp_step':
                # The runner part starts from the batch sizes that fitted.
                hints['batches'] = {
                    f"{r['model']}/{r['amp']}": r['batch']
                    for r in part['results'].get('cases', [])
                    if r.get('batch')}
    finally:
        report['elapsed_s'] = time.monotonic() - start
        report['failed_checks'] = failed_checks(report['parts'])
        write_report(report, args.out_dir)
    for line in report['failed_checks']:
        print(f'[gpu_check] FAILED {line}', flush=True)
    print(f"[gpu_check] {report['elapsed_s']:.1f} s; wrote "
          f"{osp.join(args.out_dir, 'gpu_check.json')} and .md", flush=True)
    not_ok = [n for n, p in report['parts'].items()
              if p['status'] != 'ok' and not p.get('optional')]
    return int(bool(report['failed_checks'])
               or (args.strict and bool(not_ok)))


if __name__ == '__main__':
    sys.exit(main())
