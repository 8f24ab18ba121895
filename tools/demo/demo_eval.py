"""Evaluate every table row of one demo seed, in one process.

Per seed the demo tests 8 rows and dumps 4 val splits; a fresh
``tools/test.py`` process for each spent most of its time starting up
(imports, building the model). Here they share one process and run the
user's code paths in it: ``tools/analysis/choose_fusion.py`` dumps each
selecting run's val split once and chooses ``alpha`` / ``tau`` on it
(``vlltr_mm.evaluation.fusion_selection``), then ``tools/test.py``'s
``main`` tests each row with its choice on the test split. The results go
to ``SEED_DIR/eval.json``; ``run_demo.py`` starts this script.

Example::

    python tools/demo/demo_eval.py work_dirs/demo/seed_0/eval_job.json
"""
import argparse
import json
import os.path as osp
import sys
import time
from typing import Dict

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))
from demo_stages import (  # noqa: E402
    CFG,
    METHODS,
    StageRunner,
    load_tool,
    log,
)


def _union(selects) -> str:
    """The selection covering all of ``selects`` (``'alpha'``, ``'tau'``,
    ``'alpha+tau'``)."""
    selects = list(selects)
    parts = [p for p in ('alpha', 'tau') if any(p in s for s in selects)]
    return '+'.join(parts)


def evaluate(runner: StageRunner) -> dict:
    """Choose on val and test every row of ``METHODS`` for one seed.

    Args:
        runner (StageRunner): The seed's runner (checkpoints, options).

    Returns:
        dict: ``results`` (row label -> ``metrics``: ``tools/test.py``'s
        metrics, ``choice``: what was chosen on val, without the grid) and
        ``timings`` (``val_<run>`` / ``test_<config>`` -> seconds).
    """
    from mmengine.config import Config

    from vlltr_mm.evaluation import fusion_selection as fs
    choose = load_tool('vlltr_choose_fusion',
                       'tools/analysis/choose_fusion.py')
    test_tool = load_tool('vlltr_test_tool', 'tools/test.py')
    seed = runner.seed
    timings: Dict[str, float] = {}
    dumps = {}
    for run in sorted({m.run for m in METHODS if m.select}):
        what = _union(m.select for m in METHODS if m.run == run)
        config = next(m.config for m in METHODS if m.run == run)
        start = time.time()
        dumps[run] = choose.main([
            osp.join(CFG, config), runner.ckpt(run), '--split', 'val',
            '--select', what, '--work-dir', osp.join(runner.work_dir, run),
            '--cfg-options', *runner.options(config, evaluate=True),
            f'experiment_name=val_{run}'
        ])
        dumps[run]['pred'] = fs.load_predictions(dumps[run]['predictions'])
        timings[f'val_{run}'] = time.time() - start
    results = {}
    for m in METHODS:
        choice = {}
        if m.select:
            dump = dumps[m.run]
            head = choose.head_settings(Config.fromfile(osp.join(CFG,
                                                                 m.config)))
            choice = fs.select(dump['pred'], dump['class_counts'], m.select,
                               head['alpha'], target=head['target'])
            choice.pop('grid')
            log(f"seed {seed}, {m.label}: chose alpha={choice['alpha']}, "
                f"tau={choice['tau']} on val (balanced acc "
                f"{choice['val_acc']:.1f})")
        stem = osp.splitext(m.config)[0]
        run_dir = osp.join(runner.work_dir, m.run)
        start = time.time()
        metrics = test_tool.main([
            osp.join(CFG, m.config), runner.ckpt(m.run), '--work-dir',
            run_dir, '--out', osp.join(run_dir, f'test_{stem}.json'),
            '--out-item', 'metrics', '--cfg-options',
            *runner.options(m.config, evaluate=True),
            'test_evaluator.per_class=True', f'experiment_name=test_{stem}',
            *fs.options(choice)
        ])
        timings[f'test_{m.config}'] = time.time() - start
        results[m.label] = dict(metrics=metrics, choice=choice)
    return dict(results=results, timings=timings)


def write_job(runner: StageRunner) -> str:
    """The job file this script reads for ``runner``'s seed."""
    path = osp.join(runner.work_dir, 'eval_job.json')
    with open(path, 'w') as f:
        json.dump(dict(work_dir=runner.work_dir, data=runner.data,
                       seed=runner.seed, quick=runner.quick), f, indent=1)
    return path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('job', help='eval_job.json written by run_demo.py')
    args = parser.parse_args(argv)
    with open(args.job) as f:
        job = json.load(f)
    runner = StageRunner(job['work_dir'], job['data'], job['seed'],
                         job['quick'], force=False)
    out = evaluate(runner)
    with open(osp.join(job['work_dir'], 'eval.json'), 'w') as f:
        json.dump(out, f, indent=1)


if __name__ == '__main__':
    main()
