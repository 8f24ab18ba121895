"""tools/benchmark/bench_cvlp_step.py: quick run and its arguments."""
import json
import os.path as osp
import re
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
BENCH = osp.join(REPO, 'tools', 'benchmark')
SCRIPT = osp.join(BENCH, 'bench_cvlp_step.py')

FLOAT = r'([0-9]+(?:\.[0-9]+)?)'



@pytest.mark.slow
def test_quick_run(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--quick', '--json', str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-3000:]
    text = proc.stdout

    # Both ways in ms/step, and the speed-up they imply.
    with_ms = float(re.search(
        rf'with text cache +: {FLOAT} ms/step', text).group(1))
    without_ms = float(re.search(
        rf'without text cache : {FLOAT} ms/step', text).group(1))
    speedup = float(re.search(
        rf'step speed-up \(without / with cache\): {FLOAT}x',
        text).group(1))
    assert with_ms > 0 and without_ms > 0 and speedup > 0
    assert speedup == pytest.approx(without_ms / with_ms, abs=0.01)
    tower_ms = float(re.search(
        rf'teacher text tower on the batch: {FLOAT} ms', text).group(1))
    assert tower_ms > 0
    assert 'vlltr-tiny-rn, 32 px, batch 4' in text

    res = json.loads(out.read_text())
    assert res['step']['steps'] == 3 and res['step']['threads'] == 1
    assert res['step']['speedup'] == pytest.approx(
        res['step']['uncached_ms'] / res['step']['cached_ms'])


def test_arguments(load_tool):
    bench = load_tool('tools/benchmark/bench_cvlp_step.py')
    args = bench.parse_args(['--device', 'cpu'])
    assert (args.model, args.batch_size, args.threads) == ('RN50', 8, 1)
    quick = bench.parse_args(['--quick', '--device', 'cpu'])
    assert (quick.model, quick.batch_size) == ('vlltr-tiny-rn', 4)
    with pytest.raises(SystemExit):
        bench.parse_args(['--steps', '0'])
