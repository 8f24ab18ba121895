"""VL-LTR against strong long-tail baselines on a long-tailed dataset, on CPU.

By default the dataset is Fashion-MNIST-LT (built from Debian's
``dataset-fashion-mnist``) with our class text in ``configs/vlltr/demo_text``;
``--data-root`` / ``--text-dir`` take any dataset in the ImageNet-LT list
format instead (``labels.txt`` + one ``*_train.txt``, ``*_val.txt``,
``*_test.txt`` each; text as ``labels.txt`` + ``wiki/desc_{i}.txt``). The
number of classes and the training counts are read from the data.

For every seed, each training stage runs through ``tools/train.py`` in
its own process (configs in ``configs/vlltr/demo``): CVLP (stage 1), AnSS +
LGR (VL-LTR), LGR with cut-off anchors, LGR on the initial model without
CVLP, an FC head on the CVLP features, and the vision-only baseline; then
one process (``demo_eval.py``) chooses the fusion weight alpha and the
post-hoc logit adjustment tau on the val split
(``tools/analysis/choose_fusion.py``) and tests each table row once on the
test split (``tools/test.py``). Independent processes of all seeds run side
by side, one CPU thread each on two cores (``demo_schedule.py``), with a
progress line per finished process. Output in the work dir:
``results.json`` (every seed's numbers, means, stds, the val choices),
``results.md`` (mean ± std) and ``per_class_accuracy.png``.

Example::

    python tools/demo/run_demo.py                     # seeds 0 1 2
    python tools/demo/run_demo.py --seeds 0           # one seed
    python tools/demo/run_demo.py --data-root data/digits_lt \\
        --text-dir configs/vlltr/demo_text_digits --name Digits-LT
    python tools/demo/run_demo.py --quick             # smoke run
"""
import argparse
import json
import os
import os.path as osp
import platform
import sys
import time
from functools import partial

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
import demo_eval  # noqa: E402
import demo_report  # noqa: E402
from demo_schedule import Task, clock, run_tasks  # noqa: E402
from demo_stages import (  # noqa: E402
    METHODS,
    REPO,
    STAGES,
    StageRunner,
    load_tool,
    log,
    run_tool,
    stop_tools,
)

from vlltr_mm.evaluation import fusion_selection  # noqa: E402

RECORDED = osp.join(REPO, 'docs', 'demo_results.json')


def prepare(args) -> dict:
    """Data, text check and demo model; returns the asset summary."""
    prep = load_tool('vlltr_prepare_demo', 'tools/demo/prepare_demo.py')
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


# Rough seconds for the progress estimate (recorded 2-core run): start-up
# of a tool process, the converter, and one seed's evaluation.
START_COST, INIT_COST, EVAL_COST = 7.0, 6.0, 40.0


def evaluate(runner: StageRunner) -> float:
    """All rows of ``runner``'s seed in one ``demo_eval.py`` process; logs
    what was chosen on val."""
    start = time.time()
    run_tool('demo/demo_eval.py', [demo_eval.write_job(runner)],
             osp.join(runner.work_dir, 'logs', 'eval.log'), runner.threads)
    with open(osp.join(runner.work_dir, 'eval.json')) as f:
        results = json.load(f)['results']
    for label, row in results.items():
        choice = row['choice']
        if choice:
            log(f"seed {runner.seed}, {label}: chose alpha="
                f"{choice['alpha']}, tau={choice['tau']} on val (balanced "
                f"acc {choice['val_acc']:.1f})")
    return time.time() - start


def seed_tasks(runner: StageRunner) -> list:
    """The processes of one seed: the initial checkpoint, each stage, the
    evaluation (after every stage)."""
    seed = runner.seed
    tasks = [Task(f'seed {seed} cvlp-init', runner.init_checkpoint, (),
                  INIT_COST)]
    for stage in STAGES:
        deps = () if stage.start is None else (f'seed {seed} {stage.start}', )
        cost = START_COST + stage.cost * runner.epochs(stage)
        tasks.append(Task(f'seed {seed} {stage.name}',
                          partial(runner.train, stage), deps, cost))
    tasks.append(Task(f'seed {seed} eval', partial(evaluate, runner),
                      tuple(t.name for t in tasks), EVAL_COST))
    return tasks


def seed_results(runner: StageRunner, seconds: dict) -> dict:
    """The rows and timings of one finished seed."""
    with open(osp.join(runner.work_dir, 'eval.json')) as f:
        out = json.load(f)
    prefix = f'seed {runner.seed} '
    timings = {('init_checkpoint' if k.endswith('cvlp-init') else
                'eval' if k.endswith(' eval') else
                'train_' + k[len(prefix):]): v
               for k, v in seconds.items() if k.startswith(prefix)}
    timings['total'] = sum(timings.values())
    # Inside the eval process (part of 'eval').
    timings['eval_parts'] = out['timings']
    return dict(results=out['results'], timings=timings)


def slots_and_threads(jobs) -> tuple:
    """Processes at once and CPU threads per process."""
    cores = os.cpu_count() or 1
    slots = jobs or min(cores, 4)
    return slots, max(1, cores // slots)


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
    parser.add_argument('--seeds', type=int, nargs='+', default=[0, 1, 2],
                        help='training seeds (default: 0 1 2)')
    parser.add_argument('--data-seed', type=int, default=0,
                        help='seed of the data split and of the demo '
                        "model's projections, fixed across --seeds")
    parser.add_argument('--jobs', type=int, default=None,
                        help='tool processes at once, the cores split '
                        'between them (default: the cores, at most 4; the '
                        "last digits of the numbers depend on each "
                        "process's thread count)")
    parser.add_argument('--quick', action='store_true',
                        help='smoke run: 1-3 epochs per stage')
    parser.add_argument('--force', action='store_true',
                        help='retrain finished stages')
    args = parser.parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        parser.error('--jobs must be >= 1')
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f'--seeds repeats a seed: {args.seeds}')
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
    slots, threads = slots_and_threads(args.jobs)
    runners = [
        StageRunner(osp.join(args.work_dir, f'seed_{seed}'), assets, seed,
                    args.quick, args.force, threads) for seed in args.seeds
    ]
    tasks = [t for r in runners for t in seed_tasks(r)]
    log(f'{len(tasks)} processes for seeds {args.seeds}, {slots} at once '
        f'with {threads} CPU thread(s) each')
    seconds = run_tasks(tasks, slots, log, stop_tools)
    for runner in runners:
        out = seed_results(runner, seconds)
        per_seed[runner.seed] = out['results']
        timings[f'seed_{runner.seed}'] = out['timings']
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
        processes=dict(at_once=slots, threads_each=threads),
        selection=dict(alphas=fusion_selection.ALPHAS,
                       taus=fusion_selection.TAUS,
                       criterion='val balanced accuracy'),
        timings_s=timings,
        methods=demo_report.aggregate(METHODS, per_seed))
    table = demo_report.write(result, args.work_dir)
    log(f'done in {clock(timings["total"])}; results in {args.work_dir}')
    print(table)
    if args.data_root is None and not args.quick and osp.isfile(RECORDED):
        with open(RECORDED) as f:
            print('\n' + demo_report.compare(result, json.load(f)))


if __name__ == '__main__':
    main()
