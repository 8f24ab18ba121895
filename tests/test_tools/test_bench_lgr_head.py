import json
import os.path as osp
import subprocess
import sys

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'benchmark', 'bench_lgr_head.py')


@pytest.mark.slow
def test_quick_run(tmp_path):
    out = tmp_path / 'bench.json'
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--quick', '--json', str(out)],
        capture_output=True, text=True, timeout=300, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert 'Ratios direct / efficient' in proc.stdout
    assert 'tiny, equal batch B=2: train' in proc.stdout
    assert 'tiny, B=16: direct run at the reduced batch B=2' in proc.stdout
    results = json.loads(out.read_text())
    cases = {(r['impl'], r['B'], r['class_chunk']) for r in results}
    assert cases == {('efficient', 16, 16), ('efficient', 16, None),
                     ('efficient', 2, 16), ('direct', 2, None)}
    for r in results:
        assert 'error' not in r, r
        for key in ('train_wall', 'train_cpu', 'infer_wall', 'infer_cpu'):
            assert r[key] > 0, (key, r)
        assert r['train_peak'] >= 0 and r['infer_peak'] >= 0


def test_plan_and_report(capsys, monkeypatch):
    """Case planning and ratio arithmetic on hand-made results."""
    import importlib.util

    # The script imports its neighbours by name, as when run directly.
    monkeypatch.syspath_prepend(osp.dirname(SCRIPT))
    spec = importlib.util.spec_from_file_location('bench_lgr_head', SCRIPT)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    specs = bench.plan(bench.parse_args([]))
    got = [(s['size'], s['impl'], s['B'], s['class_chunk']) for s in specs]
    assert got == [('imagenet-lt', 'efficient', 128, 1024),
                   ('imagenet-lt', 'direct', 128, None),
                   ('inat2018', 'efficient', 128, 1024),
                   ('inat2018', 'efficient', 128, None),
                   ('inat2018', 'efficient', 16, 1024),
                   ('inat2018', 'direct', 16, None)]
    cuda = bench.plan(bench.parse_args(['--device', 'cuda']))
    assert all(s['B'] == 128 and s['repeats'] == 3 for s in cuda)

    def row(impl, b, chunk, t, mem, size='inat2018', c=8000):
        return dict(size=size, device='cpu', impl=impl, B=b, C=c, M=64,
                    D=1024, class_chunk=chunk, train_wall=t, train_cpu=t,
                    infer_wall=t / 2, infer_cpu=t / 2, train_peak=mem,
                    infer_peak=mem // 2)

    mib = 2**20
    verdicts = bench.report([
        row('efficient', 128, 1024, 1.0, 10 * mib, 'imagenet-lt', 1000),
        row('direct', 128, None, 3.0, 500 * mib, 'imagenet-lt', 1000),
        row('efficient', 128, 1024, 10.0, 100 * mib),
        row('efficient', 16, 1024, 2.0, 20 * mib),
        row('direct', 16, None, 52.0, 1000 * mib)
    ], 1024)
    assert verdicts['imagenet-lt'] == {'measured': (3.0, 50.0)}
    inat = verdicts['inat2018']
    # lower bound: (52 + 10 - 2) / 10 = 6 and 1000 / 100 = 10;
    # scaled by C 8000 / 1000: 3 * 8 / 10 = 2.4 and 500 * 8 / 100 = 40
    assert inat['lower bound'] == pytest.approx((6.0, 10.0))
    assert inat['scaled from imagenet-lt'] == pytest.approx((2.4, 40.0))
    text = capsys.readouterr().out
    assert 'inat2018, equal batch B=16: train 26.0x' in text
    assert 'lower bound: time 6.0x MET, memory 10.0x MET' in text
    assert 'scaled from imagenet-lt: time 2.4x MISSED, memory 40.0x MET' in (
        text)
