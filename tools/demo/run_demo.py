"""VL-LTR against strong long-tail baselines on a long-tailed dataset, on CPU.

By default the dataset is Fashion-MNIST-LT (built from Debian's
``dataset-fashion-mnist``) with our class text in ``configs/vlltr/demo_text``;
``--data-root`` / ``--text-dir`` take any dataset in the ImageNet-LT list
format instead (``labels.txt`` + one ``*_train.txt``, ``*_val.txt``,
``*_test.txt`` each; text as ``labels.txt`` + ``wiki/desc_{i}.txt``). The
number of classes and the training counts are read from the data.

For every seed, each stage runs through ``tools/train.py`` /
``tools/test.py`` in its own process (configs in ``configs/vlltr/demo``):
CVLP (stage 1), AnSS + LGR (VL-LTR), LGR with cut-off anchors, LGR on the
initial model without CVLP, an FC head on the CVLP features, and the
vision-only baseline. The fusion weight alpha and the post-hoc logit
adjustment tau are chosen on the val split (``demo_selection.py``); the
test split is used once per table row. Output in the work dir:
``results.json`` (every seed's numbers, means, stds, the val choices),
``results.md`` (mean ± std) and ``per_class_accuracy.png``.

Example::

    python tools/demo/run_demo.py                     # Fashion-MNIST-LT
    python tools/demo/run_demo.py --seeds 0 1 2       # the README's table
    python tools/demo/run_demo.py --data-root data/digits_lt \\
        --text-dir configs/vlltr/demo_text_digits --name Digits-LT
    python tools/demo/run_demo.py --quick             # smoke run
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import platform
import sys
import time
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import demo_report  # noqa: E402
import demo_selection  # noqa: E402
from demo_stages import METHODS, REPO, STAGES, StageRunner, log  # noqa: E402

RECORDED = osp.join(REPO, 'docs', 'demo_results.json')


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def prepare(args) -> dict:
    """Data, text check and demo model; returns the asset summary."""
    prep = _load('vlltr_prepare_demo',
                 osp.join(REPO, 'tools', 'demo', 'prepare_demo.py'))
    if args.data_root is None:
        # --quick: a smaller long tail (100 -> 1) and test split (20 per
        # class), for smoke runs.
        kwargs = dict(data_name='fashion_mnist_lt_small',
                      data_kwargs=dict(n_max=100, val_per_class=5,
                                       test_per_class=20)) if args.quick \
            else {}
        assets = prep.prepare_demo(args.data_dir, seed=args.data_seed,
                                   **kwargs)
        assets['name'] = args.name or 'Fashion-MNIST-LT'
        root = osp.abspath(assets['data_root'])
        # Inside a checkout the path is shown relative to it; an installed
        # package's tools live under .mim, so show where the data really is.
        if root.startswith(REPO + os.sep):
            root = osp.relpath(root, REPO)
        assets['dataset'] = (f"{assets['name']} (imbalance factor 100, "
                             f'{root})')
    else:
        lists = {s: getattr(args, f'{s}_list') for s in ('train', 'val',
                                                          'test')}
        if any(lists.values()) and not all(lists.values()):
            raise SystemExit('give all of --train-list --val-list '
                             '--test-list, or none')
        assets = prep.prepare_custom(
            args.data_root, args.text_dir, args.data_dir,
            ann_files=lists if all(lists.values()) else None,
            seed=args.data_seed)
        assets['name'] = args.name or osp.basename(
            osp.normpath(args.data_root))
        assets['dataset'] = f"{assets['name']} ({args.data_root})"
    for split, path in assets['ann_files'].items():
        assets['ann_files'][split] = osp.abspath(path)
    assets['data_root'] = osp.abspath(assets['data_root'])
    paths = [assets['data_root'], assets['text_dir'], assets['checkpoint'],
             *assets['ann_files'].values()]
    bad = [p for p in paths if ',' in p]
    if bad:
        # --cfg-options splits every value at its commas.
        raise SystemExit(f'paths passed to the tools through --cfg-options '
                         f'may not contain commas: {bad}; move or link them')
    return assets


def run_seed(args, assets: dict, seed: int) -> dict:
    """Train, select on val and test every method for one seed."""
    work = osp.join(args.work_dir, f'seed_{seed}')
    # Several seeds at once share the cores instead of oversubscribing
    # them (thread counts can change the last digits of CPU results).
    threads = max(1, (os.cpu_count() or 1) // args.jobs) \
        if args.jobs > 1 else None
    runner = StageRunner(work, assets, seed, args.quick, args.force,
                         threads)
    timings = dict(init_checkpoint=runner.init_checkpoint())
    for i, stage in enumerate(STAGES, 1):
        log(f'seed {seed}, stage {i}/{len(STAGES)}: {stage.name}')
        timings[f'train_{stage.name}'] = runner.train(stage)

    counts = assets['train_counts']
    choices = {}
    for run in sorted({m.run for m in METHODS if m.select}):
        stage = next(s for s in STAGES if s.name == run)
        out = osp.join(work, run, 'val_predictions.pkl')
        timings[f'val_{run}'] = runner.test(run, stage.config, 'val', out)
        choices[run] = demo_selection.load_predictions(out)
    results = {}
    for m in METHODS:
        choice = {}
        if m.select:
            choice = demo_selection.select(choices[m.run], counts, m.select)
            log(f"seed {seed}, {m.label}: chose alpha={choice['alpha']}, "
                f"tau={choice['tau']} on val (balanced acc "
                f"{choice['val_acc']:.1f})")
        out = osp.join(work, m.run, f'test_{osp.splitext(m.config)[0]}.json')
        timings[f'test_{m.config}'] = runner.test(
            m.run, m.config, 'test', out, demo_selection.options(choice))
        with open(out) as f:
            results[m.label] = dict(metrics=json.load(f), choice=choice)
    timings['total'] = sum(timings.values())
    return dict(results=results, timings=timings)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-dir', default='data/demo',
                        help='where prepared data and the demo model go')
    parser.add_argument('--data-root', help='a long-tailed dataset in the '
                        'list format (default: build Fashion-MNIST-LT)')
    parser.add_argument('--text-dir',
                        default=osp.join(REPO, 'configs', 'vlltr',
                                         'demo_text'),
                        help='class text: labels.txt + wiki/desc_{i}.txt')
    for split in ('train', 'val', 'test'):
        parser.add_argument(f'--{split}-list', help=f'{split} list file '
                            f'(default: the one *_{split}.txt of --data-root)')
    parser.add_argument('--name', help='dataset name for the report')
    parser.add_argument('--seeds', type=int, nargs='+', default=[0],
                        help='training seeds (default: 0)')
    parser.add_argument('--data-seed', type=int, default=0,
                        help='seed of the data split and of the demo '
                        "model's projections, fixed across --seeds")
    parser.add_argument('--jobs', type=int, default=1,
                        help='seeds run at once, the cores split between '
                        'them (default 1; timings and last digits are '
                        'those of --jobs 1 only with 1)')
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: 1-3 epochs per stage')
    parser.add_argument('--force', action='store_true',
                        help='retrain finished stages')
    args = parser.parse_args(argv)
    args.work_dir = osp.abspath(args.work_dir)
    args.data_dir = osp.abspath(args.data_dir)
    return args


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    start = time.time()
    log('preparing data, class text and the demo model (skipped if done)')
    assets = prepare(args)
    os.makedirs(args.work_dir, exist_ok=True)
    per_seed, timings = {}, dict(prepare=time.time() - start)
    # Seeds are independent; with --jobs 2 two run at once, each stage
    # still in its own process.
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        outs = list(pool.map(lambda s: run_seed(args, assets, s),
                             args.seeds))
    for seed, out in zip(args.seeds, outs):
        per_seed[seed] = out['results']
        timings[f'seed_{seed}'] = out['timings']
    timings['total'] = time.time() - start
    quick = ' (--quick)' if args.quick else ''
    budget = ', '.join(
        f'{s.name} {s.epochs[1] if args.quick else s.epochs[0]} ep'
        for s in STAGES) + quick
    result = dict(
        dataset=assets['dataset'], dataset_short=assets['name'],
        classes=assets['classes'], train_counts=assets['train_counts'],
        seeds=args.seeds, quick=args.quick, budget=budget,
        machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, Python '
        f'{platform.python_version()}',
        command=' '.join(['python', 'tools/demo/run_demo.py'] +
                         sys.argv[1:]),
        selection=dict(alphas=demo_selection.ALPHAS,
                       taus=demo_selection.TAUS,
                       criterion='val balanced accuracy'),
        timings_s=timings,
        methods=demo_report.aggregate(METHODS, per_seed))
    table = demo_report.write(result, args.work_dir)
    log(f'done in {timings["total"]:.0f} s; results in {args.work_dir}')
    print(table)
    if args.data_root is None and not args.quick and osp.isfile(RECORDED):
        with open(RECORDED) as f:
            print('\n' + demo_report.compare(result, json.load(f)))


if __name__ == '__main__':
    main()
