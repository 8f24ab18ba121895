"""Train a model with MMEngine's Runner (same CLI as MMPretrain's tool).

Examples:
    python tools/train.py configs/vlltr/cvlp_r50_imagenet-lt.py
    tools/dist_train.sh configs/vlltr/cvlp_r50_imagenet-lt.py 8 --amp
"""
import argparse
import contextlib
import glob
import os
import os.path as osp
import time

from vlltr_mm.utils.tool_config import (
    add_cfg_options,
    add_launcher_args,
    load_config,
    parse_tool_args,
    run_runner,
)

# What MMEngine's CheckpointHook leaves in a work dir (with the default
# filename_tmpl), and what an interrupted atomic save can leave there.
CHECKPOINT_NAMES = ('epoch_*.pth', 'iter_*.pth', 'best_*.pth',
                    'last_checkpoint')
UNFINISHED_SAVES = ('.*.pth.*.tmp', )


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Train a model')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint, or from the latest one in '
        'the work dir when no path is given (if there is none, start '
        'afresh from the config\'s load_from)')
    parser.add_argument(
        '--overwrite',
        action='store_true',
        help='start afresh in a work dir that holds an earlier run\'s '
        'checkpoints, deleting them (without it such a run is refused)')
    parser.add_argument(
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual batch size')
    add_cfg_options(parser)
    add_launcher_args(parser)
    return parse_tool_args(parser, argv)


def latest_checkpoint(work_dir):
    """The checkpoint ``--resume`` continues from, or None for none.

    Reads ``work_dir/last_checkpoint`` (written by MMEngine's
    CheckpointHook) and refuses one that is empty or names a missing file.
    """
    state = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(state):
        return None
    with open(state) as f:
        path = f.read().strip()
    if not path:
        raise SystemExit(f'{state} is empty (interrupted save?). Resume '
                         f'from a given file with --resume '
                         f'{work_dir}/epoch_N.pth, or start afresh with '
                         f'--overwrite instead of --resume.')
    if not osp.isfile(path):
        raise SystemExit(f'{state} names {path}, which does not exist. '
                         f'Resume from a given file with --resume '
                         f'{work_dir}/epoch_N.pth, or start afresh with '
                         f'--overwrite instead of --resume.')
    return path


def merge_args(cfg, args):
    """Apply the command-line switches to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])

    if args.amp:
        optim_wrapper = cfg.optim_wrapper.get('type', 'OptimWrapper')
        if optim_wrapper != 'AmpOptimWrapper':
            cfg.optim_wrapper.type = 'AmpOptimWrapper'
            cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')

    if args.resume == 'auto':
        latest = latest_checkpoint(cfg.work_dir)
        if latest is not None:
            cfg.resume = True
            cfg.load_from = latest
        # else: nothing to resume, so this is a fresh run from the config's
        # load_from (MMEngine's own auto-resume would drop it and start the
        # stage from random weights).
    elif args.resume is not None:
        cfg.resume = True
        cfg.load_from = args.resume

    if args.no_validate:
        cfg.val_cfg = None
        cfg.val_dataloader = None
        cfg.val_evaluator = None

    if args.auto_scale_lr:
        cfg.setdefault('auto_scale_lr', {})['enable'] = True

    cfg.launcher = args.launcher
    return cfg


def _names(work_dir, patterns):
    return sorted({
        osp.basename(p)
        for pattern in patterns
        for p in glob.glob(osp.join(glob.escape(work_dir), pattern))
    })


def _remove(work_dir, names):
    for name in names:
        # Every rank runs this before the group forms; one of them wins.
        with contextlib.suppress(FileNotFoundError):
            os.remove(osp.join(work_dir, name))


def check_work_dir(cfg, args):
    """Refuse to start afresh over an earlier run's checkpoints.

    A run that does not resume would overwrite ``epoch_N.pth`` and leave
    the earlier run's other files (``best_*.pth``, ``last_checkpoint``)
    mixed with its own. It is refused unless ``--overwrite`` is given,
    which deletes them first. Temporary files of a save that was killed
    are removed in every case.

    Args:
        cfg (Config): The merged config (``work_dir``, ``resume``,
            ``load_from``).
        args (Namespace): The command line (``resume``, ``overwrite``).

    Returns:
        list[str]: Lines to log once the runner's logger exists.

    Raises:
        SystemExit: If the work dir holds checkpoints and the run neither
            resumes nor has ``--overwrite``, or both flags are given.
    """
    if args.overwrite and args.resume is not None:
        raise SystemExit('--overwrite starts afresh and --resume continues '
                         'a run: give one of them.')
    work_dir, notes = cfg.work_dir, []
    found = _names(work_dir, CHECKPOINT_NAMES)
    if found and not cfg.resume:
        shown = ', '.join(found[:6]) + (', ...' if len(found) > 6 else '')
        if not args.overwrite:
            rank0 = os.environ.get('RANK', '0') == '0'
            if args.resume == 'auto':
                why = (f'--resume: {work_dir} has no last_checkpoint but '
                       f'holds checkpoints of an earlier run ({shown}). '
                       f'Continue from one of them with --resume '
                       f'{work_dir}/<file>, or drop --resume and add '
                       f'--overwrite to delete them and start afresh.')
            else:
                why = (f'{work_dir} holds checkpoints of an earlier run '
                       f'({shown}); this run would overwrite them. Continue '
                       f'that run with --resume, write this one to another '
                       f'--work-dir, or add --overwrite to delete them and '
                       f'start afresh.')
            if rank0:
                raise SystemExit(why)
            # The others see the same dir and leave the message to rank 0;
            # they leave after it, or torchrun could stop rank 0 first.
            time.sleep(5)
            raise SystemExit(1)
        _remove(work_dir, found)
        notes.append(f'--overwrite: deleted the earlier run\'s checkpoints '
                     f'in {work_dir}: {", ".join(found)}')
    if args.resume == 'auto' and not cfg.resume:
        start = (f'from load_from={cfg.load_from}'
                 if cfg.get('load_from') else 'from the initial weights')
        notes.append(f'--resume: nothing to resume in {work_dir} (no '
                     f'last_checkpoint); starting afresh {start}.')
    leftovers = _names(work_dir, UNFINISHED_SAVES)
    if leftovers:
        _remove(work_dir, leftovers)
        notes.append(f'Removed {len(leftovers)} temporary file(s) of an '
                     f'interrupted checkpoint save in {work_dir}: '
                     f'{", ".join(leftovers)}')
    return notes


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    cfg = merge_args(cfg, args)
    notes = check_work_dir(cfg, args)

    def train(runner):
        for note in notes:
            runner.logger.info(note)
        runner.train()

    run_runner(cfg, 'training', train)


if __name__ == '__main__':
    main()
