"""The result tables of README.md and docs/results.md are the recorded
runs' own numbers (docs/*_results.json), mean ± std over >= 3 seeds."""
import json
import os.path as osp

import numpy as np
import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
RECORDED = {
    'Fashion-MNIST-LT': ('demo_results.json',
                         'demo_per_class_accuracy.png'),
    'Digits-LT': ('demo_digits_results.json',
                  'demo_digits_per_class_accuracy.png'),
}
# The rows the README's headline table shows (docs/results.md has all).
HEADLINE = ('Baseline (vision only, FC, fine-tuned)',
            'Baseline + logit adjustment', 'Zero-shot (CVLP text prototypes)',
            'VL-LTR (LGR + AnSS)', 'VL-LTR + logit adjustment')


def cell(row, key):
    return f'{row[key]:.1f} ± {row[key + "_std"]:.1f}'


def table_row(m):
    return (f"| {m['method']} | {cell(m, 'overall')} | {cell(m, 'many')} "
            f"| {cell(m, 'medium')} | {cell(m, 'few')} |")


def read(name):
    return open(osp.join(ROOT, name)).read()


@pytest.mark.parametrize('name', sorted(RECORDED))
def test_tables_match_recorded_run(name):
    result_file, plot_file = RECORDED[name]
    result = json.load(open(osp.join(ROOT, 'docs', result_file)))
    results_md = read('docs/results.md')
    assert not result['quick'], 'the docs must show a full run'
    assert result['dataset_short'] == name
    assert len(result['seeds']) >= 3, 'mean ± std needs >= 3 seeds'
    for m in result['methods']:
        # The stored mean / std are those of the stored per-seed numbers.
        for key in ('overall', 'many', 'medium', 'few'):
            values = [s[key] for s in m['seeds'].values()]
            assert m[key] == pytest.approx(np.mean(values))
            assert m[f'{key}_std'] == pytest.approx(np.std(values, ddof=1))
        assert table_row(m) in results_md, table_row(m)
    minutes = result['timings_s']['total'] / 60
    assert f'{minutes:.1f} min' in results_md
    assert osp.isfile(osp.join(ROOT, 'docs', plot_file))


def test_readme_headline_is_the_recorded_run():
    result = json.load(open(osp.join(ROOT, 'docs', 'demo_results.json')))
    readme = read('README.md')
    rows = {m['method']: m for m in result['methods']}
    assert set(HEADLINE) <= set(rows)
    for method in HEADLINE:
        assert table_row(rows[method]) in readme, table_row(rows[method])
