"""tools/benchmark/gpu_check.py: the quick CPU run and its time limits."""
import importlib.util
import json
import math
import os.path as osp
import re
import subprocess
import sys
import time

import pytest

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
SCRIPT = osp.join(REPO, 'tools', 'benchmark', 'gpu_check.py')
PARTS = ('cvlp_step', 'cvlp_runner', 'lgr_head', 'anss', 'correctness',
         'zero_shot')
TINY = ('vlltr-tiny-rn', 'vlltr-tiny-vit')


def load(name):
    path = osp.join(REPO, 'tools', 'benchmark', f'{name}.py')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_check(out_dir, *extra, timeout=240):
    """Run the script on the CPU at quick size; returns (proc, report)."""
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--device', 'cpu', '--quick', '--out-dir',
         str(out_dir), *extra],
        capture_output=True, text=True, timeout=timeout, cwd=REPO)
    path = out_dir / 'gpu_check.json'
    assert path.is_file(), proc.stderr[-3000:]
    return proc, json.loads(path.read_text())


def positive(value):
    return isinstance(value, (int, float)) and math.isfinite(value) \
        and value > 0


def md_sections(text):
    """``{part: section text}`` of the Markdown summary."""
    heads = list(re.finditer(r'^## (\w+): ', text, re.M))
    ends = [h.start() for h in heads[1:]] + [len(text)]
    return {h.group(1): text[h.end():end] for h, end in zip(heads, ends)}


@pytest.fixture(scope='module')
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp('gpu_check')
    start = time.monotonic()
    proc, report = run_check(out)
    return proc, report, out, time.monotonic() - start


def check_quick_report(report):
    """Every assertion on a quick CPU report (no CUDA)."""
    assert report['device'] and isinstance(report['device'], str)
    assert report['torch'] and 'cuda' in report
    assert report['quick'] is True and report['started']
    assert 0 < report['elapsed_s'] < 60  # the CI budget of the quick run
    assert tuple(report['parts']) == PARTS
    for name, part in report['parts'].items():
        assert set(part) >= {'status', 'reason', 'elapsed_s', 'results'}
        if name == 'zero_shot':
            continue
        assert part['status'] == 'ok', (name, part['reason'])
        assert part['elapsed_s'] > 0
    assert report['failed_checks'] == []
    # The zero-shot check needs a CLIP file: skipped, and why.
    part = report['parts']['zero_shot']
    assert part['status'] == 'skipped' and part['optional'] is True
    assert part['reason'].startswith('no --clip-weights')

    # cvlp_step: each tiny tower x teacher mode in bf16; fp16 is skipped
    # on the CPU with its reason.
    rows = report['parts']['cvlp_step']['results']['cases']
    assert {(r['model'], r['amp'], r['teacher']) for r in rows} == {
        (m, a, t) for m in TINY for a in ('bf16', 'fp16')
        for t in ('full', 'cached')}
    for r in rows:
        if r['amp'] == 'fp16':
            assert r['status'] == 'skipped' and r['skip'] == 'device'
            assert 'CUDA' in r['reason']
            continue
        assert r['status'] == 'ok' and r['batch'] == 4
        assert r['image_size'] == 32
        for key in ('images_per_s', 'step_ms', 'peak_mib', 'loss'):
            assert positive(r[key]), (key, r)
        assert r['images_per_s'] == pytest.approx(
            4e3 / r['step_ms'], rel=1e-6)

    # cvlp_runner: MMEngine's Runner, both towers, 3 iterations.
    rows = report['parts']['cvlp_runner']['results']['cases']
    assert [r['model'] for r in rows] == list(TINY)
    for r in rows:
        assert r['status'] == 'ok' and r['iters'] == 3
        assert r['timed_iters'] == 2
        for key in ('iters_per_s', 'images_per_s', 'peak_mib', 'loss'):
            assert positive(r[key]), (key, r)
        assert r['data_ms'] >= 0

    # lgr_head: both forms timed; they agree, also under bf16 autocast.
    lgr = report['parts']['lgr_head']['results']
    assert [r['impl'] for r in lgr['cases']] == ['efficient', 'direct']
    for r in lgr['cases']:
        assert (r['C'], r['M'], r['D']) == (20, 8, 32)
        assert positive(r['train_ms']) and positive(r['infer_ms'])
        assert r['train_extra_mib'] >= 0
    checks = {r['check']: r for r in lgr['checks']}
    assert set(checks) == {'lgr efficient vs direct',
                           'lgr efficient bf16 vs fp32',
                           'lgr direct bf16 vs fp32'}
    assert checks['lgr efficient vs direct']['value'] <= 1e-4
    for r in checks.values():
        assert r['ok'] and 0 <= r['value'] <= r['tol'], r

    # anss: throughput and agreement with a float64 reference.
    anss = report['parts']['anss']['results']
    (row, ) = anss['cases']
    assert (row['sentences'], row['images'], row['dim']) == (300, 40, 32)
    assert positive(row['sentences_per_s']) and positive(row['seconds'])
    assert anss['checks'][0]['ok']

    # correctness: losses under autocast, the gradients of a whole step,
    # finite weights after one step.
    checks = {r['check']: r for r in
              report['parts']['correctness']['results']['checks']}
    assert set(checks) == {
        'ClassWiseContrastiveLoss bf16 vs fp32',
        'CLIPDistillationLoss bf16 vs fp32',
        'CVLP step bf16 vs fp32: gradients',
        'CVLP step bf16: finite weights',
        'LGR efficient step bf16: finite weights',
        'LGR direct step bf16: finite weights'}
    for r in checks.values():
        assert r['ok'] and r['status'] == 'ok', r
        assert 0 <= r['value'] <= r['tol']
    for name in ('ClassWiseContrastiveLoss', 'CLIPDistillationLoss'):
        # The losses run in float32 under autocast: no gap of their own.
        r = checks[f'{name} bf16 vs fp32']
        assert r['loss_dtype'] == 'torch.float32'
        assert 0 <= r['grad_rel'] <= r['grad_tol'] <= 1e-4
    r = checks['CVLP step bf16 vs fp32: gradients']
    assert r['model'] == TINY[0] and r['tol'] == 0.5
    # The gap is the largest of the named parameters' gaps.
    gaps = dict(item.rsplit(': ', 1) for item in r['grad_rel'].split(', '))
    assert r['worst'] in gaps and 'logit_scale' in gaps
    assert any(n.startswith('backbone.') for n in gaps)
    assert any(n.startswith('text_encoder.') for n in gaps)
    assert float(gaps[r['worst']]) == pytest.approx(r['value'], rel=1e-2)


@pytest.mark.slow
def test_quick_cpu_run(quick_run):
    proc, report, out, wall = quick_run
    assert proc.returncode == 0, (report.get('failed_checks'),
                                  proc.stderr[-3000:])
    check_quick_report(report)
    assert wall < 90  # interpreter start-up on top of elapsed_s

    # The Markdown summary: a section per part, each with a table.
    sections = md_sections((out / 'gpu_check.md').read_text())
    assert tuple(sections) == PARTS
    for name, text in sections.items():
        assert re.search(r'^\| .* \|\n\|( --- \|)+\n\| ', text, re.M), name
    assert '| vlltr-tiny-rn | fp16 |' in sections['cvlp_step']


@pytest.mark.slow
def test_no_budget_skips_every_part(tmp_path):
    proc, report = run_check(tmp_path, '--budget', '0')
    # Skipping for time is not a failure without --strict.
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert tuple(report['parts']) == PARTS
    for name, part in report['parts'].items():
        assert part['status'] == 'skipped'
        if name != 'zero_shot':  # skipped for want of --clip-weights
            assert 'would not fit' in part['reason']
            assert '0 s of the 0 s budget' in part['reason']
    sections = md_sections((tmp_path / 'gpu_check.md').read_text())
    assert all('| skipped |' in text for text in sections.values())

    proc, report = run_check(tmp_path, '--budget', '0', '--strict',
                             '--parts', 'anss')
    assert proc.returncode == 1
    assert list(report['parts']) == ['anss']
    # An optional part without its input does not fail --strict.
    proc, report = run_check(tmp_path, '--budget', '0', '--strict',
                             '--parts', 'zero_shot')
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert report['parts']['zero_shot']['status'] == 'skipped'


def test_missing_clip_weights_file_is_refused(tmp_path):
    proc = subprocess.run(
        [sys.executable, SCRIPT, '--device', 'cpu', '--out-dir',
         str(tmp_path), '--clip-weights', str(tmp_path / 'RN50.pt')],
        capture_output=True, text=True, timeout=60, cwd=REPO)
    assert proc.returncode == 2
    assert f'--clip-weights {tmp_path}/RN50.pt: no such file' in proc.stderr
    assert not (tmp_path / 'gpu_check.json').exists()


@pytest.mark.slow
def test_zero_shot_part_runs_the_tool(tmp_path, tiny_baseline_data):
    """With --clip-weights the part runs tools/analysis/zero_shot.py with
    the file in both towers (here the demo config on generated data)."""
    from test_zero_shot import DEMO, make_demo_options
    weights, opts = make_demo_options(tmp_path, tiny_baseline_data)
    out = tmp_path / 'out'
    proc, report = run_check(
        out, '--parts', 'zero_shot', '--clip-weights', weights,
        '--zero-shot-config', DEMO, '--zero-shot-options', *opts)
    assert proc.returncode == 0, proc.stderr[-3000:]
    part = report['parts']['zero_shot']
    assert part['status'] == 'ok', part
    (row, ) = part['results']['cases']  # no paper figure for the demo
    result = json.loads((out / 'zero_shot' / 'zero_shot.json').read_text())
    assert result['pretrained'] == dict(backbone=weights,
                                        text_encoder=weights)
    assert result['config'] == DEMO and row['config'] == osp.basename(DEMO)
    for key, value in result['measured'].items():
        assert row[key] == value
    assert 'not a shipped benchmark' in row['note']
    assert '| cvlp_demo_fmnist-lt.py | test |' in (
        out / 'gpu_check.md').read_text()


@pytest.fixture(scope='module')
def process():
    return load('gpu_check_process')


def _slow_part(ctx):
    ctx.emit('cases', dict(case='first'))
    time.sleep(60)


def test_part_over_its_time_limit_is_killed_and_skipped(process):
    start = time.monotonic()
    out = process.run_part(_slow_part, 1.5)
    assert time.monotonic() - start < 15
    assert out['status'] == 'skipped'
    assert 'time limit of 1.5 s' in out['reason']
    # Rows sent before the kill are kept.
    assert out['results']['cases'] == [dict(case='first', status='ok')]


def _paced_part(ctx):
    for i in range(4):
        reason = ctx.skip_reason(1.0)
        if reason:
            ctx.emit('cases', dict(i=i, status='skipped', skip='time',
                                   reason=reason))
            continue
        time.sleep(1.0)
        ctx.emit('cases', dict(i=i))


def test_case_that_would_overrun_is_skipped_with_reason(process):
    out = process.run_part(_paced_part, 3.0)
    rows = out['results']['cases']
    assert [r['i'] for r in rows] == [0, 1, 2, 3]  # ran to the end
    assert rows[0]['status'] == 'ok'
    assert rows[-1]['status'] == 'skipped'
    assert rows[-1]['reason'].startswith('would not fit')
    assert out['status'] == 'skipped'
    assert 'skipped to stay within the time limit' in out['reason']


def _broken_part(ctx):
    ctx.emit('checks', dict(check='a', value=1.0, tol=0.5, ok=False))
    raise ValueError('boom')


def _failing_check_part(ctx):
    ctx.emit('checks', dict(check='a', value=1.0, tol=0.5, ok=False))
    return dict(extra=1)


def test_errors_and_failed_checks_are_recorded(process):
    out = process.run_part(_broken_part, 30)
    assert out['status'] == 'error' and out['reason'] == 'ValueError: boom'
    assert 'Traceback' in out['traceback']
    assert out['results']['checks'][0]['status'] == 'failed'

    out = process.run_part(_failing_check_part, 30)
    assert out['status'] == 'error'
    assert out['reason'] == 'check(s) failed: a'
    assert out['results']['extra'] == 1
    report = load('gpu_check_report')
    assert report.failed_checks(dict(p=out)) == ['p: a (1 vs tol 0.5)']


def test_fit_batch_halves_on_out_of_memory():
    common = load('gpu_check_common')
    import torch
    tried = []

    def run(batch):
        tried.append(batch)
        if batch > 64:
            raise torch.cuda.OutOfMemoryError('CUDA out of memory.')
        return batch * 10

    assert common.fit_batch(run, 256) == (64, 640)
    assert tried == [256, 128, 64]

    def broken(batch):
        raise ValueError('not memory')

    with pytest.raises(ValueError):
        common.fit_batch(broken, 256)


def test_zero_shot_argv_moves_weights_and_data(load_tool):
    """The part's command line, parsed as zero_shot.py does, puts the
    weights in both towers and every data path under --data-root."""
    from vlltr_mm.utils.tool_config import load_config
    part = load_tool('tools/benchmark/gpu_check_zero_shot.py')
    argv = part.zero_shot_argv(
        dict(config=osp.join(REPO, 'configs/vlltr/cvlp_r50_places-lt.py'),
             clip_weights='/w/RN50.pt', data_root='/d/places',
             text_root='/t/places', options=['test_dataloader.batch_size=7']),
        '/out/zero_shot')
    tool = load_tool('tools/analysis/zero_shot.py')
    args = tool.parse_args(argv)
    cfg = tool.zero_shot_config(load_config(args.config, args.cfg_options),
                                args)
    assert cfg.work_dir == '/out/zero_shot' and cfg.load_from is None
    assert cfg.model.backbone.pretrained == '/w/RN50.pt'
    assert cfg.model.text_encoder.pretrained == '/w/RN50.pt'
    assert cfg.test_dataloader.dataset.data_root == '/d/places'
    assert cfg.test_dataloader.batch_size == 7
    assert cfg.test_evaluator.train_ann_file == '/d/places/Places_LT_train.txt'
    assert cfg.model.corpus.labels_file.startswith('/t/places/')
    assert tool.paper_figures(cfg, 'test')[0]['overall'] == 38.0
