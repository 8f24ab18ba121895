"""The README's demo tables are the recorded runs' own output."""
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


def cell(row, key):
    return f'{row[key]:.1f} ± {row[key + "_std"]:.1f}'


@pytest.mark.parametrize('name', sorted(RECORDED))
def test_readme_table_matches_recorded_run(name):
    result_file, plot_file = RECORDED[name]
    result = json.load(open(osp.join(ROOT, 'docs', result_file)))
    readme = open(osp.join(ROOT, 'README.md')).read()
    assert not result['quick'], 'the README must show a full run'
    assert result['dataset_short'] == name
    assert len(result['seeds']) >= 3, 'mean ± std needs >= 3 seeds'
    for m in result['methods']:
        # The stored mean / std are those of the stored per-seed numbers.
        for key in ('overall', 'many', 'medium', 'few'):
            values = [s[key] for s in m['seeds'].values()]
            assert m[key] == pytest.approx(np.mean(values))
            assert m[f'{key}_std'] == pytest.approx(np.std(values, ddof=1))
        row = (f"| {m['method']} | {cell(m, 'overall')} | {cell(m, 'many')} "
               f"| {cell(m, 'medium')} | {cell(m, 'few')} |")
        assert row in readme, row
    minutes = result['timings_s']['total'] / 60
    assert f'{minutes:.0f} min' in readme
    assert osp.isfile(osp.join(ROOT, 'docs', plot_file))
