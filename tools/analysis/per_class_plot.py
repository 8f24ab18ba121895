"""Plot per-class accuracy against the classes' training counts.

Classes are sorted by training count (head left, tail right on the rank
axis; ``--x count`` puts them on a log count axis), one line per run, with
the spread over seeds (± 1 sample std) as a band where a run has several.

Inputs (JSON), any mix of:

- the CPU demo's ``results.json`` (``tools/demo/run_demo.py``): one run
  per table row (``--methods`` picks rows), every seed's ``per_class``;
- a ``LongTailAccuracy`` per-class file (``per_class_file=...``): one run,
  ``classes`` = ``[{"name", "train_count", "accuracy", ...}, ...]``
  (``--key`` picks another accuracy column, e.g. ``accuracy_image``;
  null = class absent from the evaluation set).

Runs with the same label are one run with several seeds: give the same
``--labels`` value to the per-class files of several seeds.

Example::

    python tools/analysis/per_class_plot.py work_dirs/demo/results.json \\
        --methods "Baseline (vision only, FC, fine-tuned)" \\
        "VL-LTR (LGR + AnSS)" --out per_class.png
    python tools/analysis/per_class_plot.py s0.json s1.json s2.json \\
        base.json --labels VL-LTR VL-LTR VL-LTR baseline
"""
import argparse
import json
import os.path as osp
import warnings
from typing import Dict, List, NamedTuple, Optional, Sequence

import numpy as np


class Run(NamedTuple):
    """One line of the plot: per-class accuracies [S, C] in % of S seeds
    (NaN: class absent from the evaluation set)."""
    label: str
    classes: List[str]
    counts: np.ndarray
    seeds: np.ndarray


def _accuracies(values, where: str) -> np.ndarray:
    try:
        return np.array([np.nan if v is None else float(v) for v in values])
    except (TypeError, ValueError):
        raise ValueError(f'{where}: accuracies must be numbers or null, '
                         f'got {values!r}') from None


def runs_from_result(result: dict, methods: Optional[Sequence[str]] = None,
                     where: str = 'results') -> List[Run]:
    """Runs of a demo ``results.json`` (already loaded).

    Args:
        result (dict): ``classes``, ``train_counts`` and ``methods`` (rows
            with ``method`` and ``seeds`` -> seed -> ``per_class``).
        methods (Sequence[str], optional): Rows to keep, in this order.
            Defaults to None (all rows).
        where (str): Name of the source in error messages.

    Raises:
        ValueError: If a row is missing or its per-class lists are bad.
    """
    rows = {r['method']: r for r in result['methods']}
    names = list(rows) if methods is None else list(methods)
    missing = [m for m in names if m not in rows]
    if missing:
        raise ValueError(f'{where}: no row {missing}; rows: {list(rows)}')
    classes = [str(c) for c in result['classes']]
    counts = np.asarray(result['train_counts'], np.int64)
    runs = []
    for name in names:
        seeds = np.stack([
            _accuracies(s['per_class'], f'{where}: {name}, seed {k}')
            for k, s in rows[name]['seeds'].items()
        ])
        if seeds.shape[1] != len(classes):
            raise ValueError(f'{where}: {name} has {seeds.shape[1]} '
                             f'per-class values for {len(classes)} classes')
        runs.append(Run(name, classes, counts, seeds))
    return runs


def run_from_per_class(data: dict, label: str, key: str = 'accuracy',
                       where: str = 'per-class file') -> Run:
    """The run of a ``LongTailAccuracy`` per-class file (already loaded).

    Raises:
        ValueError: If an entry lacks ``train_count`` or ``key``.
    """
    rows = data['classes']
    for i, row in enumerate(rows):
        for field in ('train_count', key):
            if field not in row:
                raise ValueError(f"{where}: classes[{i}] has no '{field}' "
                                 f'(keys: {sorted(row)})')
    classes = [str(r.get('name') or f"class {r.get('index', i)}")
               for i, r in enumerate(rows)]
    counts = np.array([int(r['train_count']) for r in rows], np.int64)
    seeds = _accuracies([r[key] for r in rows], where)[None]
    return Run(label, classes, counts, seeds)


def load_runs(paths: Sequence[str], labels: Optional[Sequence[str]] = None,
              methods: Optional[Sequence[str]] = None,
              key: str = 'accuracy') -> List[Run]:
    """Read the files and merge runs of equal label as seeds.

    Args:
        paths (Sequence[str]): Demo results or per-class files.
        labels (Sequence[str], optional): One per file: the run's label
            (a demo file's rows become ``'label: row'``). Defaults to the
            row names / the file names.
        methods (Sequence[str], optional): Demo rows to keep.
        key (str): Accuracy column of per-class files.

    Raises:
        ValueError: For a file of neither kind, a wrong number of labels,
            or merged runs whose classes or counts differ.
    """
    if labels is not None and len(labels) != len(paths):
        raise ValueError(f'{len(labels)} labels for {len(paths)} files')
    merged: Dict[str, Run] = {}
    for i, path in enumerate(paths):
        with open(path) as f:
            data = json.load(f)
        label = labels[i] if labels else None
        if isinstance(data, dict) and 'methods' in data:
            runs = runs_from_result(data, methods, path)
            if label:
                runs = [r._replace(label=f'{label}: {r.label}') for r in runs]
        elif isinstance(data, dict) and isinstance(data.get('classes'), list):
            runs = [run_from_per_class(
                data, label or osp.splitext(osp.basename(path))[0], key,
                path)]
        else:
            raise ValueError(f"{path}: neither a demo results.json ('methods')"
                             " nor a per-class file ('classes' entries)")
        for run in runs:
            old = merged.get(run.label)
            if old is None:
                merged[run.label] = run
                continue
            if old.classes != run.classes or not np.array_equal(
                    old.counts, run.counts):
                raise ValueError(f'{path}: {run.label!r} has other classes '
                                 'or training counts than the run of the '
                                 'same label before it')
            merged[run.label] = old._replace(
                seeds=np.concatenate([old.seeds, run.seeds]))
    return list(merged.values())


def prepare(runs: Sequence[Run]) -> dict:
    """What is drawn: classes sorted by training count, largest first
    (ties keep the class order), and each run's seed mean and spread.

    Returns:
        dict: ``order`` [C] (class indices as drawn), ``names``,
        ``counts`` [C] (sorted), ``mean`` [R, C], ``std`` [R, C] (sample
        std over seeds, NaN for one seed), ``seeds`` [R] (seeds per run)
        and ``labels`` [R].

    Raises:
        ValueError: If the runs describe different classes or counts.
    """
    first = runs[0]
    for run in runs[1:]:
        if run.classes != first.classes or not np.array_equal(
                run.counts, first.counts):
            raise ValueError(f'{run.label!r} and {first.label!r} describe '
                             'different classes or training counts')
    order = np.argsort(-first.counts, kind='stable')
    mean, std = [], []
    with warnings.catch_warnings():
        # nanmean of a class no seed evaluated is NaN, silently.
        warnings.simplefilter('ignore', RuntimeWarning)
        for run in runs:
            seeds = run.seeds[:, order]
            mean.append(np.nanmean(seeds, axis=0))
            std.append(np.nanstd(seeds, axis=0, ddof=1)
                       if len(seeds) > 1 else np.full(len(order), np.nan))
    return dict(order=order, names=[first.classes[i] for i in order],
                counts=first.counts[order], mean=np.array(mean),
                std=np.array(std), seeds=[len(r.seeds) for r in runs],
                labels=[r.label for r in runs])


def plot(prep: dict, out: str, title: str = '', x: str = 'rank',
         many: int = 100, few: int = 20) -> None:
    """Draw :func:`prepare`'s data into ``out`` (PNG).

    Args:
        prep (dict): From :func:`prepare`.
        out (str): Image file.
        title (str): Figure title. Defaults to ``''``.
        x (str): ``'rank'`` (classes evenly spaced, named when there are
            at most 40) or ``'count'`` (log training count).
            Defaults to ``'rank'``.
        many (int): Smallest many-shot count (dotted line). Defaults to 100.
        few (int): Largest few-shot count (dotted line). Defaults to 20.
    """
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    counts, num = prep['counts'], len(prep['counts'])
    rank = x == 'rank'
    pos = np.arange(num) if rank else counts
    width = min(16.0, max(7.5, 0.4 * num)) if rank else 7.5
    fig, ax = plt.subplots(figsize=(width, 4.8), dpi=120)
    styles = ('o--', 'o:', 'd-.', 's-', 's-.', '^--', 'v:', 'x-')
    for i, label in enumerate(prep['labels']):
        mean, std, n = prep['mean'][i], prep['std'][i], prep['seeds'][i]
        line, = ax.plot(pos, mean, styles[i % len(styles)], ms=4,
                        label=f'{label} (n = {n})')
        if n > 1:
            ax.fill_between(pos, mean - std, mean + std, alpha=0.15, lw=0,
                            color=line.get_color())
    if rank:
        # Group edges between the last class of one group and the next.
        edges = [0] + [int(np.sum(counts >= e)) for e in (many, few + 1)]
        for k in edges[1:]:
            if 0 < k < num:
                ax.axvline(k - 0.5, color='grey', lw=0.8, ls=':')
        for name, lo, hi in zip(('many', 'medium', 'few'), edges,
                                edges[1:] + [num]):
            if hi > lo:
                ax.text((lo + hi - 1) / 2, 101, name, ha='center',
                        va='bottom', fontsize=8, color='grey')
        if num <= 40:
            ax.set_xticks(pos, [f'{n}\n({c})' for n, c in
                                zip(prep['names'], counts)], fontsize=7,
                          rotation=90 if num > 12 else 0)
        ax.set_xlabel('class (training images), most images first')
    else:
        for edge in (many, few):
            ax.axvline(edge, color='grey', lw=0.8, ls=':')
        ax.set_xscale('log')
        ax.set_xlabel('training images of the class (log scale)')
    ax.set_ylabel('accuracy of the class (%)')
    ax.set_ylim(0, 108)
    ax.set_title(title or 'per-class accuracy by training count', fontsize=10)
    ax.legend(loc='upper center', ncol=2, fontsize=8, frameon=False,
              bbox_to_anchor=(0.5, -0.22 if rank else -0.14))
    # 'tight' keeps the legend below the axes in the image.
    fig.savefig(out, bbox_inches='tight')
    plt.close(fig)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', nargs='+', help='results / per-class '
                        'JSON files')
    parser.add_argument('--out', default='per_class_accuracy.png')
    parser.add_argument('--labels', nargs='+', help='one label per file')
    parser.add_argument('--methods', nargs='+', help='demo rows to draw '
                        '(default: all)')
    parser.add_argument('--key', default='accuracy', help='accuracy column '
                        'of per-class files (default: accuracy)')
    parser.add_argument('--x', choices=['rank', 'count'], default='rank')
    parser.add_argument('--title', default='')
    parser.add_argument('--many', type=int, default=100)
    parser.add_argument('--few', type=int, default=20)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    prep = prepare(load_runs(args.results, args.labels, args.methods,
                             args.key))
    plot(prep, args.out, args.title, args.x, args.many, args.few)
    print(f'{args.out}: {len(prep["labels"])} run(s), '
          f'{len(prep["counts"])} classes')


if __name__ == '__main__':
    main()
