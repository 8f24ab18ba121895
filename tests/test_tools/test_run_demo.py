"""The README's main job, shortened (--quick: smaller data, 1-2 epochs)."""
import json
import os
import os.path as osp
import subprocess
import sys

import pytest
from PIL import Image

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
FMNIST = '/usr/share/datasets/fashion-mnist'


@pytest.mark.slow
@pytest.mark.skipif(
    not osp.isdir(FMNIST),
    reason='needs the Debian package dataset-fashion-mnist (make test '
    'installs it)')
def run_demo(work, data):
    env = dict(os.environ, HF_HUB_OFFLINE='1', TRANSFORMERS_OFFLINE='1')
    proc = subprocess.run([
        sys.executable, 'tools/demo/run_demo.py', '--quick', '--work-dir',
        str(work), '--data-dir',
        str(data)
    ],
                          cwd=ROOT,
                          env=env,
                          capture_output=True,
                          text=True,
                          timeout=1500)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-5000:]
    return out


def test_demo_quick_produces_table_json_and_plot(tmp_path):
    work = tmp_path / 'work'
    out = run_demo(work, tmp_path / 'data')

    result = json.load(open(work / 'results.json'))
    methods = result['methods']
    assert [m['run'] for m in methods] == [
        'baseline', 'cvlp', 'fc', 'lgr-cutoff', 'lgr'
    ]
    num_classes = len(result['classes'])
    assert num_classes == 10 and len(result['train_counts']) == 10
    for m in methods:
        for key in ('overall', 'many', 'medium', 'few'):
            assert 0.0 <= m[key] <= 100.0, (m['method'], key)
        assert len(m['per_class']) == num_classes

    # The Markdown table holds the JSON's numbers and is printed too.
    table = (work / 'results.md').read_text()
    lines = table.strip().splitlines()
    assert lines[0].startswith('| Method | Overall | Many | Medium | Few')
    assert len(lines) == 2 + len(methods)
    vl = methods[-1]
    assert (f"| {vl['method']} | {vl['overall']:.1f} | {vl['many']:.1f} | "
            f"{vl['medium']:.1f} | {vl['few']:.1f} |") in table
    assert lines[-1] in out

    with Image.open(work / 'per_class_accuracy.png') as img:
        img.verify()
        assert img.format == 'PNG' and img.size[0] > 300

    # Same seed, same machine: every stage retrained from scratch gives the
    # same numbers, exactly (tolerance 0).
    run_demo(tmp_path / 'again', tmp_path / 'data')
    again = json.load(open(tmp_path / 'again' / 'results.json'))
    for m, n in zip(methods, again['methods']):
        for key in ('overall', 'many', 'medium', 'few', 'per_class'):
            assert m[key] == n[key], (m['method'], key)
