"""The README's demo table is the recorded run's own output."""
import json
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def test_readme_table_matches_recorded_run():
    result = json.load(open(osp.join(ROOT, 'docs', 'demo_results.json')))
    readme = open(osp.join(ROOT, 'README.md')).read()
    assert not result['quick'], 'the README must show a full run'
    for m in result['methods']:
        row = (f"| {m['method']} | {m['overall']:.1f} | {m['many']:.1f} | "
               f"{m['medium']:.1f} | {m['few']:.1f} |")
        assert row in readme, row
    assert f"{result['timings_s']['total']:.0f} s in total" in readme
    assert osp.isfile(osp.join(ROOT, 'docs', 'demo_per_class_accuracy.png'))
