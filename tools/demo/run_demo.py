"""The main job: VL-LTR against its baselines on Fashion-MNIST-LT, on CPU.

Prepares what is missing (data, demo CLIP checkpoint), then runs through
``tools/train.py`` / ``tools/test.py``:

1. CVLP (stage 1) and its zero-shot test (Table 1 "Zero-Shot CLIP");
2. AnSS + LGR (stage 2: VL-LTR, Table 1 / Table 4 #1);
3. LGR with cut-off anchors (Table 4 #7);
4. an FC head on the CVLP image tower (Table 4 #5);
5. the vision-only baseline (Table 1 "Baseline"),

and writes ``results.json``, ``results.md`` (overall / many / medium / few
per method) and ``per_class_accuracy.png`` (per-class accuracy against
training count, VL-LTR vs the baseline) into the work dir.

Example::

    python tools/demo/run_demo.py                 # work_dirs/demo
    python tools/demo/run_demo.py --quick         # 1-epoch smoke run
"""
import argparse
import importlib.util
import json
import os
import os.path as osp
import platform
import subprocess
import sys
import time

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CFG = osp.join(REPO, 'configs', 'vlltr', 'demo')

# name, config, epochs (full, quick); stages after 'cvlp' start from it
TRAIN = [
    ('cvlp', 'cvlp_demo_fmnist-lt.py', (10, 2)),
    ('lgr', 'lgr_demo_fmnist-lt.py', (8, 1)),
    ('lgr-cutoff', 'lgr-cutoff_demo_fmnist-lt.py', (8, 1)),
    ('fc', 'fc_demo_fmnist-lt.py', (8, 1)),
    ('baseline', 'baseline_demo_fmnist-lt.py', (18, 2)),
]
# table label, run whose checkpoint is tested, paper reference
METHODS = [
    ('Baseline (vision only, FC, fine-tuned)', 'baseline', 'Table 1'),
    ('Zero-shot (CVLP text prototypes)', 'cvlp', 'Table 1'),
    ('FC head on CVLP features', 'fc', 'Table 4 #5'),
    ('LGR + cut-off anchors', 'lgr-cutoff', 'Table 4 #7'),
    ('VL-LTR (LGR + AnSS)', 'lgr', 'Table 1, Table 4 #1'),
]


def _load(name, path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def log(msg):
    print(f'[demo {time.strftime("%H:%M:%S")}] {msg}', flush=True)


def common_options(root, seed):
    opts = [f'randomness.seed={seed}']
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        data = 'dataset.dataset' if key == 'train_dataloader' else 'dataset'
        opts.append(f'{key}.{data}.data_root={root}')
    for key in ('val_evaluator', 'test_evaluator'):
        opts.append(f'{key}.train_ann_file={root}/FashionMNIST_LT_train.txt')
    return opts


def weights_options(name, data_dir):
    """Stages that start from the demo CLIP file (not from a checkpoint)."""
    weights = osp.join(data_dir, 'demo_clip.pth')
    if name == 'cvlp':
        return [
            f'model.backbone.pretrained={weights}',
            f'model.text_encoder.pretrained={weights}'
        ]
    if name == 'baseline':
        return [f'model.backbone.pretrained={weights}']
    return []


def stage_options(name, data_dir, work_dir, epochs):
    opts = [f'train_cfg.max_epochs={epochs}']
    opts += weights_options(name, data_dir)
    if name not in ('cvlp', 'baseline'):
        opts += [f'load_from={last_ckpt(work_dir, "cvlp")}']
    if name in ('cvlp', 'baseline'):
        # The cosine phase follows the (possibly shortened) schedule.
        opts += [f'param_scheduler.1.T_max={max(epochs - 1, 1)}',
                 f'param_scheduler.1.end={epochs}']
    else:
        opts += [f'param_scheduler.T_max={epochs}']
    return opts


def last_ckpt(work_dir, name):
    return osp.join(work_dir, name, 'last.pth')


def run_tool(tool, argv):
    """Run tools/train.py or tools/test.py in a fresh process, as a user
    would (one stage's memory is returned before the next starts)."""
    subprocess.run([sys.executable, osp.join(REPO, 'tools', tool), *argv],
                   cwd=REPO, check=True)


def train_stage(name, config, epochs, args, base_opts):
    run_dir = osp.join(args.work_dir, name)
    ckpt = last_ckpt(args.work_dir, name)
    if osp.isfile(ckpt) and not args.force:
        log(f'{name}: {ckpt} exists, skipped (--force to retrain)')
        return 0.0
    opts = base_opts + stage_options(name, args.data_dir, args.work_dir,
                                     epochs)
    if name != 'cvlp':
        opts = [o for o in opts if 'dataset.dataset.' not in o] + [
            o.replace('dataset.dataset.', 'dataset.')
            for o in opts if 'dataset.dataset.' in o
        ]
    log(f'{name}: training {epochs} epoch(s) ({config})')
    start = time.time()
    run_tool('train.py', [
        osp.join(CFG, config), '--work-dir', run_dir, '--cfg-options', *opts
    ])
    # A stable name for the final weights, whatever the epoch count.
    final = osp.join(run_dir, f'epoch_{epochs}.pth')
    os.replace(final, ckpt)
    return time.time() - start


def test_stage(name, config, args, base_opts):
    run_dir = osp.join(args.work_dir, name)
    out = osp.join(run_dir, 'test_metrics.json')
    opts = [o for o in base_opts if 'train_dataloader' not in o]
    opts += weights_options(name, args.data_dir)
    opts += ['test_evaluator.per_class=True', 'custom_hooks=[]']
    start = time.time()
    run_tool('test.py', [
        osp.join(CFG, config),
        last_ckpt(args.work_dir, name), '--work-dir', run_dir, '--out', out,
        '--out-item', 'metrics', '--cfg-options', *opts
    ])
    with open(out) as f:
        return json.load(f), time.time() - start


def write_results(args, assets, metrics, timings):
    counts = assets['train_counts']
    rows = []
    for label, run, ref in METHODS:
        m = metrics[run]
        rows.append(
            dict(
                method=label,
                run=run,
                paper=ref,
                overall=m['accuracy/top1'],
                many=m['accuracy/many'],
                medium=m['accuracy/medium'],
                few=m['accuracy/few'],
                per_class=m['accuracy/per_class']))
    result = dict(
        dataset=f"Fashion-MNIST-LT (imbalance factor 100, "
        f"{assets['data_root']})",
        classes=assets['classes'],
        train_counts=counts,
        seed=args.seed,
        quick=args.quick,
        machine=f'{platform.machine()}, {os.cpu_count()} CPU cores, '
        f'{platform.python_version()}',
        timings_s=timings,
        methods=rows)
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=2)

    lines = [
        '| Method | Overall | Many | Medium | Few | Paper |',
        '| --- | ---: | ---: | ---: | ---: | --- |',
    ]
    for r in rows:
        lines.append(f"| {r['method']} | {r['overall']:.1f} | "
                     f"{r['many']:.1f} | {r['medium']:.1f} | "
                     f"{r['few']:.1f} | {r['paper']} |")
    table = '\n'.join(lines)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n')
    plot(rows, counts, assets['classes'],
         osp.join(args.work_dir, 'per_class_accuracy.png'))
    return table


def plot(rows, counts, classes, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    by_run = {r['run']: r for r in rows}
    fig, ax = plt.subplots(figsize=(7, 4.6), dpi=120)
    for run, style in (('baseline', 'o--'), ('lgr', 's-')):
        pairs = sorted(zip(counts, by_run[run]['per_class']))
        ax.plot([c for c, _ in pairs], [a for _, a in pairs], style,
                label=by_run[run]['method'])
    for c, name in zip(counts, classes):
        ax.annotate(name, (c, 2), fontsize=7, rotation=90, ha='center')
    for edge in (20, 100):
        ax.axvline(edge, color='grey', lw=0.8, ls=':')
    ax.set_xscale('log')
    ax.set_xlabel('training images of the class (log scale)')
    ax.set_ylabel('test accuracy of the class (%)')
    ax.set_ylim(0, 105)
    ax.set_title('Fashion-MNIST-LT: per-class accuracy')
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=2,
              fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--work-dir', default='work_dirs/demo')
    parser.add_argument('--data-dir', default='data/demo')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument(
        '--quick',
        action='store_true',
        help='smoke run: a smaller dataset and 1-2 epochs per stage')
    parser.add_argument(
        '--force', action='store_true', help='retrain finished stages')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    os.environ.setdefault('HF_HUB_OFFLINE', '1')
    os.environ.setdefault('TRANSFORMERS_OFFLINE', '1')
    tools = dict(prepare=_load('vlltr_prepare_demo',
                               osp.join(REPO, 'tools/demo/prepare_demo.py')))
    start = time.time()
    log('preparing data and the demo CLIP model (skipped when present)')
    if args.quick:
        # A smaller long tail (100 -> 1 images) and test split (20 per
        # class), for smoke runs and CI.
        data = dict(
            data_name='fashion_mnist_lt_small',
            data_kwargs=dict(n_max=100, val_per_class=5, test_per_class=20))
    else:
        data = {}
    assets = tools['prepare'].prepare_demo(
        args.data_dir, seed=args.seed, **data)
    timings = dict(prepare=time.time() - start)
    os.makedirs(args.work_dir, exist_ok=True)
    base_opts = common_options(assets['data_root'], args.seed)
    for i, (name, config, epochs) in enumerate(TRAIN, 1):
        log(f'stage {i}/{len(TRAIN)}: {name}')
        timings[f'train_{name}'] = train_stage(
            name, config, epochs[1] if args.quick else epochs[0],
            args, base_opts)
    metrics = {}
    for name, config, _ in TRAIN:
        log(f'testing {name}')
        metrics[name], timings[f'test_{name}'] = test_stage(
            name, config, args, base_opts)
    timings['total'] = time.time() - start
    table = write_results(args, assets, metrics, timings)
    log(f'done in {timings["total"]:.0f} s; results in {args.work_dir}')
    print(table)


if __name__ == '__main__':
    main()
