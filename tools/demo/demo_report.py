"""Aggregate the demo's per-seed metrics into JSON, Markdown and a plot.

Each method's numbers are the mean over seeds with the sample standard
deviation (``ddof=1``; 0 for a single seed); every seed's own numbers and
the hyper-parameters chosen on val stay in the JSON.
"""
import json
import os.path as osp
from typing import Dict, List

import numpy as np

KEYS = ('overall', 'many', 'medium', 'few')
# Rows drawn in the per-class plot.
PLOTTED = ('Baseline (vision only, FC, fine-tuned)',
           'Baseline + logit adjustment', 'VL-LTR (LGR + AnSS)',
           'VL-LTR + logit adjustment')


def _std(values: List[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else 0.0


def aggregate(methods, per_seed: Dict[int, dict]) -> List[dict]:
    """One row per method with means, stds and every seed's numbers.

    Args:
        methods (list[Method]): Table rows (see ``demo_stages.METHODS``).
        per_seed (dict): seed -> method label -> ``dict(metrics=...,
            choice=...)`` where ``metrics`` is ``tools/test.py``'s JSON.
    """
    rows = []
    for m in methods:
        seeds = {}
        for seed, results in per_seed.items():
            r = results[m.label]
            met = r['metrics']
            seeds[str(seed)] = dict(
                overall=met['accuracy/top1'], many=met['accuracy/many'],
                medium=met['accuracy/medium'], few=met['accuracy/few'],
                per_class=met['accuracy/per_class'],
                chosen={k: v for k, v in r['choice'].items() if k != 'grid'})
        row = dict(method=m.label, run=m.run, config=m.config,
                   paper=m.paper, selected_on_val=m.select or None,
                   seeds=seeds)
        for key in KEYS:
            values = [s[key] for s in seeds.values()]
            row[key] = float(np.mean(values))
            row[f'{key}_std'] = _std(values)
        per_class = np.array([s['per_class'] for s in seeds.values()],
                             np.float64)
        row['per_class'] = np.mean(per_class, axis=0).tolist()
        row['per_class_std'] = (np.std(per_class, axis=0, ddof=1).tolist()
                                if len(seeds) > 1 else
                                [0.0] * per_class.shape[1])
        rows.append(row)
    return rows


def cell(row: dict, key: str) -> str:
    """``mean ± std`` as printed in the tables (and checked by tests)."""
    return f'{row[key]:.1f} ± {row[key + "_std"]:.1f}'


def markdown(result: dict) -> str:
    """The results table with its caption and the val choices."""
    seeds = result['seeds']
    lines = [
        f"**{result['dataset']}**, test split, top-1 accuracy in % (mean ± "
        f"std over seeds {', '.join(map(str, seeds))}). Budget: "
        f"{result['budget']}.",
        '',
        '| Method | Overall | Many | Medium | Few | Chosen on val | Paper |',
        '| --- | ---: | ---: | ---: | ---: | --- | --- |',
    ]
    for r in result['methods']:
        chosen = []
        for key in ('alpha', 'tau'):
            vals = [s['chosen'].get(key) for s in r['seeds'].values()]
            if key in (r['selected_on_val'] or ''):
                chosen.append(f"{key} " + '/'.join(f'{v:g}' for v in vals))
        lines.append(f"| {r['method']} | {cell(r, 'overall')} | "
                     f"{cell(r, 'many')} | {cell(r, 'medium')} | "
                     f"{cell(r, 'few')} | {', '.join(chosen) or '-'} | "
                     f"{r['paper']} |")
    return '\n'.join(lines)


def write(result: dict, work_dir: str) -> str:
    """Write ``results.json``, ``results.md``, ``per_class_accuracy.png``;
    returns the Markdown."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=2)
    table = markdown(result)
    links = anss_report_links(result, work_dir)
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n' + (f'\n{links}\n' if links else ''))
    plot(result, osp.join(work_dir, 'per_class_accuracy.png'))
    return table


def anss_report_links(result: dict, work_dir: str) -> str:
    """A line linking each seed's AnSS report (the sentences AnSS kept and
    dropped per class, written by the hook next to its artifact); empty
    if no report exists."""
    links = [
        f'[seed {seed}]({rel})' for seed in result['seeds']
        for rel in [f'seed_{seed}/lgr/anss_anchors_report.md']
        if osp.isfile(osp.join(work_dir, rel))
    ]
    return ('Anchor sentences kept and dropped by AnSS, per class: ' +
            ', '.join(links) + '.') if links else ''


def plot(result: dict, path: str) -> None:
    """Per-class test accuracy against training count: the seed mean with
    its spread (± 1 std) for the baseline and VL-LTR rows."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    counts = np.asarray(result['train_counts'])
    order = np.argsort(counts)
    fig, ax = plt.subplots(figsize=(7.5, 4.8), dpi=120)
    styles = ('o--', 'o:', 's-', 's-.')
    for label, style in zip(PLOTTED, styles):
        row = next(r for r in result['methods'] if r['method'] == label)
        mean = np.asarray(row['per_class'])[order]
        std = np.asarray(row['per_class_std'])[order]
        line, = ax.plot(counts[order], mean, style, label=label, ms=4)
        ax.fill_between(counts[order], mean - std, mean + std,
                        color=line.get_color(), alpha=0.15, lw=0)
    names = result['classes']
    for c, name in zip(counts, names):
        ax.annotate(name, (c, 2), fontsize=7, rotation=90, ha='center')
    for edge in (20, 100):
        ax.axvline(edge, color='grey', lw=0.8, ls=':')
    ax.set_xscale('log')
    ax.set_xlabel('training images of the class (log scale)')
    ax.set_ylabel('test accuracy of the class (%)')
    ax.set_ylim(0, 105)
    ax.set_title(f"{result['dataset_short']}: per-class accuracy, mean ± "
                 f"std over {len(result['seeds'])} seed(s)")
    ax.legend(loc='upper center', bbox_to_anchor=(0.5, -0.16), ncol=2,
              fontsize=8, frameon=False)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def compare(result: dict, recorded: dict) -> str:
    """This run's means next to a recorded run's mean ± std (an empty
    string if the recorded file is not a multi-seed result)."""
    if 'seeds' not in recorded or not all(
            'overall_std' in r for r in recorded.get('methods', [])):
        return ''
    rec = {r['method']: r for r in recorded['methods']}
    lines = [
        f"This run (seeds {result['seeds']}) against the recorded "
        f"{len(recorded['seeds'])}-seed run:",
        '| Method | Overall (this run) | Overall (recorded) | Few (this '
        'run) | Few (recorded) |', '| --- | ---: | ---: | ---: | ---: |'
    ]
    for r in result['methods']:
        old = rec.get(r['method'])
        if old is None:
            continue
        lines.append(f"| {r['method']} | {r['overall']:.1f} | "
                     f"{cell(old, 'overall')} | {r['few']:.1f} | "
                     f"{cell(old, 'few')} |")
    return '\n'.join(lines)
