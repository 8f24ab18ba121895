"""Aggregate the demo's per-seed metrics into JSON, Markdown and a plot.

Each method's numbers are the mean over seeds with the sample standard
deviation (``ddof=1``; 0 for a single seed, shown as ``n = 1`` instead);
every seed's own numbers and the hyper-parameters chosen on val stay in
the JSON. The plot is ``tools/analysis/per_class_plot.py``'s.
"""
import json
import os.path as osp
from typing import Dict, List, Optional

import numpy as np
from demo_stages import load_tool

KEYS = ('overall', 'many', 'medium', 'few')
# Rows drawn in the per-class plot: the baselines, zero-shot, VL-LTR.
PLOTTED = ('Baseline (vision only, FC, fine-tuned)',
           'Baseline + logit adjustment', 'Zero-shot (CVLP text prototypes)',
           'VL-LTR (LGR + AnSS)', 'VL-LTR + logit adjustment')
PLOT_FILE = 'per_class_accuracy.png'


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


def cell(row: dict, key: str, seeds: Optional[int] = None) -> str:
    """``mean ± std`` as printed in the tables (and checked by tests); the
    value alone for one seed (the caption says ``n = 1``)."""
    if seeds == 1:
        return f'{row[key]:.1f}'
    return f'{row[key]:.1f} ± {row[key + "_std"]:.1f}'


def markdown(result: dict) -> str:
    """The results table with its caption and the val choices."""
    seeds = result['seeds']
    names = ', '.join(map(str, seeds))
    stat = (f'seed {names}, n = 1' if len(seeds) == 1 else
            f'mean ± std over seeds {names}, n = {len(seeds)}')
    n = len(seeds)
    lines = [
        f"**{result['dataset']}**, test split, top-1 accuracy in % "
        f"({stat}). Budget: {result['budget']}.",
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
        lines.append(f"| {r['method']} | {cell(r, 'overall', n)} | "
                     f"{cell(r, 'many', n)} | {cell(r, 'medium', n)} | "
                     f"{cell(r, 'few', n)} | {', '.join(chosen) or '-'} | "
                     f"{r['paper']} |")
    return '\n'.join(lines)


def write(result: dict, work_dir: str) -> str:
    """Write ``results.json``, ``results.md``, ``per_class_accuracy.png``;
    returns the Markdown."""
    with open(osp.join(work_dir, 'results.json'), 'w') as f:
        json.dump(result, f, indent=2)
    table = markdown(result)
    links = anss_report_links(result, work_dir)
    plot(result, osp.join(work_dir, PLOT_FILE))
    with open(osp.join(work_dir, 'results.md'), 'w') as f:
        f.write(table + '\n' + (f'\n{links}\n' if links else '') +
                f'\n![per-class test accuracy]({PLOT_FILE})\n')
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


def _plot_tool():
    return load_tool('vlltr_per_class_plot',
                     'tools/analysis/per_class_plot.py')


def plot(result: dict, path: str) -> None:
    """Per-class test accuracy of the :data:`PLOTTED` rows, classes by
    training count, seed mean ± std."""
    tool = _plot_tool()
    prep = tool.prepare(tool.runs_from_result(result, PLOTTED))
    n = len(result['seeds'])
    spread = f'mean ± std over {n} seeds' if n > 1 else 'one seed'
    tool.plot(prep, path, f"{result['dataset_short']}: per-class test "
              f'accuracy ({spread})')


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
