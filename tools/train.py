"""Train a model with MMEngine's Runner (same CLI as MMPretrain's tool).

Examples:
    python tools/train.py configs/vlltr/cvlp_r50_imagenet-lt.py
    tools/dist_train.sh configs/vlltr/cvlp_r50_imagenet-lt.py 8 --amp
"""
import argparse
import os
import os.path as osp

from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from vlltr_mm.utils import close_distributed, setup_cpu_distributed


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
        '--amp', action='store_true', help='mixed precision training')
    parser.add_argument(
        '--no-validate',
        action='store_true',
        help='skip validation during training')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the lr by the actual batch size')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, `key=value` pairs, e.g. '
        'train_dataloader.dataset.data_root=/data/imagenet')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    return args


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
                         f'{work_dir}/epoch_N.pth, or delete it to start '
                         f'afresh.')
    if not osp.isfile(path):
        raise SystemExit(f'{state} names {path}, which does not exist. '
                         f'Resume from a given file with --resume '
                         f'{work_dir}/epoch_N.pth, or delete {state} to '
                         f'start afresh.')
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
    setup_cpu_distributed(cfg, args.launcher)
    return cfg


def main(argv=None):
    args = parse_args(argv)
    cfg = Config.fromfile(args.config)
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    cfg = merge_args(cfg, args)
    runner = Runner.from_cfg(cfg)
    try:
        runner.train()
    finally:
        # The runner's DDP reducer holds the process group and its gloo
        # work; release it before the group is torn down (see
        # close_distributed).
        del runner
        close_distributed()


if __name__ == '__main__':
    main()
