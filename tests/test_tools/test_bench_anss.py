import json
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.slow
def test_bench_anss_quick(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run([
        sys.executable,
        osp.join(REPO, 'tools', 'benchmark', 'bench_anss.py'), '--quick',
        '--threads', '1', '--json',
        str(out)
    ], capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for text in ('chunked :', 'peak RSS', 'extrapolated', 'speed-up'):
        assert text in proc.stdout
    res = json.loads(out.read_text())
    assert res['config']['num_sentences'] == 3000
    assert res['chunked']['finite']
    assert res['chunked']['seconds'] > 0
    # the subprocess really ran and held its inputs: RSS is a real figure
    assert res['chunked']['peak_rss_bytes'] >= \
        res['chunked']['rss_before_bytes'] > res['chunked']['input_bytes']
    assert res['loop']['sentences'] == 100
    assert res['loop']['max_abs_diff'] < 1e-3  # same numbers, other way
    assert res['speedup'] == pytest.approx(
        res['loop_extrapolated_seconds'] / res['chunked']['seconds'])
