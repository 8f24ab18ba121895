"""Choose the LGR fusion weight alpha and the post-hoc tau on a split.

Dumps the split's predictions once (``{split}_predictions.pkl`` in the work
dir, as ``tools/test.py --out``; one process, or several through torchrun
/ ``--launcher pytorch``), with the head's post-hoc adjustment off so the
branch scores are raw. Then it grid-searches ``alpha`` (LGR heads) and
``tau`` (``posthoc_tau``: post-hoc logit adjustment of the image branch
with the class prior the checkpoint's head keeps) for the best balanced
accuracy (``vlltr_mm.evaluation.fusion_selection``, the CPU demo's code;
ties go to the smaller tau, then to the alpha nearest the config's). It
prints the grid, the choice and the ``--cfg-options`` to paste into
``tools/test.py``, logs them, and writes them to ``fusion_choice.json``.

Examples::

    python tools/analysis/choose_fusion.py \\
        configs/vlltr/lgr_r50_imagenet-lt.py lgr.pth
    torchrun --nproc_per_node 2 tools/analysis/choose_fusion.py \\
        configs/vlltr/lgr_r50_imagenet-lt.py lgr.pth --launcher pytorch
    # then
    python tools/test.py configs/vlltr/lgr_r50_imagenet-lt.py lgr.pth \\
        --cfg-options model.head.alpha=0.6 model.head.posthoc_tau=0.5
"""
import argparse
import copy
import inspect
import json
import os
import os.path as osp
import warnings

from mmengine.config import Config
from mmengine.logging import MMLogger
from mmpretrain.registry import MODELS

from vlltr_mm.evaluation import fusion_selection as fs
from vlltr_mm.utils.checkpoint import (
    load_local_checkpoint,
    strip_module_prefix,
)
from vlltr_mm.utils.files import atomic_write
from vlltr_mm.utils.tool_config import (
    add_cfg_options,
    add_launcher_args,
    load_config,
    parse_tool_args,
    run_runner,
)

PRIOR_KEY = 'head.class_prior.counts'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='config of the checkpoint')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--split', choices=['val', 'test'], default='val',
                        help='split to choose on (default: val)')
    parser.add_argument('--select', choices=fs.SELECTIONS,
                        help='what to choose (default: alpha+tau for a '
                        'head with branch scores, else tau)')
    parser.add_argument('--alpha-grid', type=float, nargs='+',
                        default=list(fs.ALPHAS), metavar='A',
                        help='alpha values (default: 0, 0.1, ..., 1)')
    parser.add_argument('--tau-grid', type=float, nargs='+',
                        default=list(fs.TAUS), metavar='T',
                        help='tau values (default: 0, 0.25, ..., 2)')
    parser.add_argument('--predictions', help='a dump made before by this '
                        'tool: skip the model and only search')
    parser.add_argument('--work-dir', help='where the dump, the JSON and '
                        'the logs go (default: work_dirs/<config name>)')
    parser.add_argument('--out', help='JSON file of the choice (default: '
                        'WORK_DIR/fusion_choice.json)')
    add_cfg_options(parser, 'model.head.class_chunk=1024')
    add_launcher_args(parser)
    args = parse_tool_args(parser, argv)
    # Checked here, before any model runs.
    args.alpha_grid = fs.check_grid(args.alpha_grid, 'alpha', 1.0)
    args.tau_grid = fs.check_grid(args.tau_grid, 'tau', None)
    return args


def head_settings(cfg: Config) -> dict:
    """The head's ``type``, ``alpha``, ``posthoc_target`` and whether it has
    branch scores, from the config (class defaults where it is silent).

    Raises:
        SystemExit: If the head has no ``posthoc_tau``.
    """
    head = cfg.model.get('head') or {}
    cls = MODELS.get(head.get('type', ''))
    params = inspect.signature(cls.__init__).parameters if cls else {}
    if 'posthoc_tau' not in params:
        raise SystemExit(
            f"{cfg.filename}: model.head is {head.get('type')!r}, which has "
            'no posthoc_tau; choose_fusion needs LGRHead (alpha and tau) or '
            'LogitAdjustedLinearClsHead (tau).')

    def value(key):
        if key in head:
            return head[key]
        return params[key].default if key in params else None

    return dict(type=head['type'], alpha=value('alpha'),
                target=value('posthoc_target') or 'image',
                branches='alpha' in params)


def class_counts(checkpoint: str, cfg: Config) -> list:
    """The training counts the head keeps: the checkpoint's class prior,
    else the config's ``model.head.class_counts``.

    Raises:
        SystemExit: If neither has them.
    """
    state = load_local_checkpoint(checkpoint, map_location='cpu')
    counts = strip_module_prefix(state.get('state_dict', state)).get(
        PRIOR_KEY)
    if counts is not None and counts.numel():
        return counts.tolist()
    counts = cfg.model.head.get('class_counts')
    if counts:
        return list(counts)
    raise SystemExit(
        f'{checkpoint}: no {PRIOR_KEY} (the head was trained without '
        "ClassPriorHook) and the config gives no model.head.class_counts; "
        'tau needs the training class prior. Add class_counts=[...] to '
        'model.head with --cfg-options.')


def dump_config(cfg: Config, split: str, out: str) -> Config:
    """``cfg`` set to dump ``split`` unadjusted to ``out``."""
    cfg = copy.deepcopy(cfg)
    if split != 'test':
        loader = cfg.get(f'{split}_dataloader')
        if not loader:
            raise SystemExit(f'{cfg.filename} has no {split}_dataloader; '
                             'use --split test or add one.')
        cfg.test_dataloader = copy.deepcopy(loader)
    # The dumped branch scores must be raw for the grid to be exact.
    cfg.model.head.posthoc_tau = 0.0
    cfg.test_evaluator = dict(type='DumpResults', out_file_path=out)
    cfg.setdefault('test_cfg', dict())
    return cfg


def dump_predictions(cfg: Config, split: str, out: str) -> bool:
    """Run the model on ``split`` and write its predictions to ``out``;
    returns whether this process is rank 0 (the one that has the file)."""
    cfg = dump_config(cfg, split, out)
    _, main = run_runner(cfg, 'dumping predictions',
                         lambda runner: runner.test())
    return main


def report(result: dict) -> str:
    """The text printed and logged for a choice."""
    what = result['select']
    lines = [
        f"{what} chosen on {result['split']} ({result['split']} balanced "
        f"accuracy in %, * = chosen):",
        fs.grid_table(result),
        f"chosen: alpha={result['alpha']}, tau={result['tau']} "
        f"({result['split']} balanced accuracy {result['val_acc']:.2f} %)",
        'test with: --cfg-options ' + ' '.join(result['cfg_options']),
    ]
    return '\n'.join(lines)


def main(argv=None):
    """Returns the result (also written as JSON) on rank 0, else None."""
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    head = head_settings(cfg)
    if args.select and 'alpha' in args.select and not head['branches']:
        raise SystemExit(f"--select {args.select}: {head['type']} has no "
                         "alpha (no branch scores); use --select tau")
    cfg.work_dir = args.work_dir or cfg.get('work_dir') or osp.join(
        'work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.launcher = args.launcher
    if args.split == 'test':
        warnings.warn('choosing on the test split: the test numbers of '
                      'this choice are no longer held out')
    # Before the model runs: a checkpoint without a prior fails now.
    counts = class_counts(args.checkpoint, cfg)
    pkl = args.predictions or osp.join(osp.abspath(cfg.work_dir),
                                       f'{args.split}_predictions.pkl')
    if args.predictions:
        if os.environ.get('RANK', '0') != '0':
            return None  # started by a launcher: one rank searches
    elif not dump_predictions(cfg, args.split, pkl):
        return None
    pred = fs.load_predictions(pkl)
    what = args.select or ('alpha+tau' if 'image' in pred else 'tau')
    default_alpha = head['alpha'] if head['alpha'] is not None else 0.5
    choice = fs.select(pred, counts, what, default_alpha, args.alpha_grid,
                       args.tau_grid, head['target'])
    result = dict(
        config=args.config, checkpoint=args.checkpoint, split=args.split,
        select=what, predictions=pkl, class_counts=counts,
        default_alpha=default_alpha, target=head['target'], **choice,
        cfg_options=fs.options(choice))
    out = args.out or osp.join(cfg.work_dir, 'fusion_choice.json')
    with atomic_write(out, 'w') as f:
        json.dump(result, f, indent=1)
    text = report(result) + f'\nwritten to {out}'
    if args.predictions:
        print(text, flush=True)
    else:
        # The dump's runner logger: console and its log file.
        MMLogger.get_current_instance().info('choose_fusion:\n' + text)
    return result


if __name__ == '__main__':
    main()
