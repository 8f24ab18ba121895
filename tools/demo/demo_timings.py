"""Where the time of demo runs went, side by side (from ``results.json``).

Each run's ``timings_s`` is grouped into the parts of a seed, averaged over
its seeds: the initial checkpoint, CVLP, the baseline, the four stages on a
frozen tower (LGR, cut-off, no-CVLP, FC), the evaluation (val dumps and
test rows), their sum (seconds of tool processes) and the wall time per
seed (the run's total less data preparation, over its seeds; processes
that ran side by side make it smaller than the sum). Works on the files of
the one-process-per-row runner and of the scheduled one.

Example::

    python tools/demo/demo_timings.py old/results.json new/results.json
"""
import argparse
import json
from typing import Dict, List

import numpy as np

FROZEN = ('lgr', 'lgr-cutoff', 'lgr-nocvlp', 'fc')
PARTS = ('init checkpoint', 'CVLP', 'baseline', 'frozen-tower stages (4)',
         'evaluation', 'sum of processes', 'wall per seed')


def seed_parts(t: dict) -> Dict[str, float]:
    """The parts of one seed's timings (seconds)."""
    evaluation = t.get('eval')
    if evaluation is None:  # one tools/test.py process per dump / row
        evaluation = sum(v for k, v in t.items()
                         if k.startswith(('val_', 'test_')))
    parts = {
        'init checkpoint': t.get('init_checkpoint', 0.0),
        'CVLP': t.get('train_cvlp', 0.0),
        'baseline': t.get('train_baseline', 0.0),
        'frozen-tower stages (4)': sum(t.get(f'train_{s}', 0.0)
                                       for s in FROZEN),
        'evaluation': evaluation,
    }
    parts['sum of processes'] = sum(parts.values())
    return parts


def run_parts(result: dict) -> Dict[str, float]:
    """Seed-averaged parts of one run."""
    timings = result['timings_s']
    seeds = [timings[f'seed_{s}'] for s in result['seeds']]
    parts = {k: float(np.mean([seed_parts(t)[k] for t in seeds]))
             for k in PARTS[:-1]}
    parts['wall per seed'] = (timings['total'] - timings.get(
        'prepare', 0.0)) / len(seeds)
    return parts


def table(results: List[dict], names: List[str]) -> str:
    """Markdown: one row per part, one column per run (seconds), and the
    ratio of the last run to the first."""
    parts = [run_parts(r) for r in results]
    head = '| part | ' + ' | '.join(names) + ' | last / first |'
    lines = [head, '| --- |' + ' ---: |' * (len(names) + 1)]
    for key in PARTS:
        cells = ' | '.join(f'{p[key]:.0f}' for p in parts)
        first, last = parts[0][key], parts[-1][key]
        ratio = f'{last / first:.2f}' if first else '-'
        lines.append(f'| {key} | {cells} | {ratio} |')
    return '\n'.join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', nargs='+', help='results.json files')
    parser.add_argument('--names', nargs='+', help='column names')
    args = parser.parse_args(argv)
    names = args.names or args.results
    if len(names) != len(args.results):
        parser.error('give one --names entry per file')
    results = []
    for path in args.results:
        with open(path) as f:
            results.append(json.load(f))
    for name, r in zip(names, results):
        print(f"{name}: seeds {r['seeds']}, {r.get('machine', '?')}, "
              f"{'--quick' if r.get('quick') else 'full budget'}")
    print(table(results, names))


if __name__ == '__main__':
    main()
