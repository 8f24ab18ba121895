"""Evaluate a checkpoint with MMEngine's Runner (MMPretrain's CLI).

Prints every metric of the config's test evaluator; with
``LongTailAccuracy`` that is overall / many / medium / few accuracy.

Examples:
    python tools/test.py configs/vlltr/lgr_r50_imagenet-lt.py lgr.pth
    tools/dist_test.sh configs/vlltr/lgr_r50_imagenet-lt.py lgr.pth 8
"""
import argparse
import os
import os.path as osp
import tempfile

import mmengine
from mmengine.evaluator import DumpResults

from vlltr_mm.utils.tool_config import (
    add_cfg_options,
    add_launcher_args,
    load_config,
    parse_tool_args,
    run_runner,
)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Test (and eval) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument(
        '--work-dir', help='the dir to save evaluation results and logs')
    parser.add_argument(
        '--out', help='dump predictions (pickle) or metrics (json/yaml)')
    parser.add_argument(
        '--out-item',
        choices=['metrics', 'pred'],
        help='what --out holds: "metrics" or "pred" (default: "pred")')
    add_cfg_options(parser)
    add_launcher_args(parser)
    return parse_tool_args(parser, argv)


def check_out(out, item):
    """Fail before the evaluation if ``--out`` cannot be written.

    Creates the parent folder and a probe file in it, so that permission,
    read-only and not-a-folder problems show now, not after the metrics.
    """
    formats = ('.pkl', '.pickle') if item == 'pred' else (
        '.json', '.yaml', '.yml', '.pkl', '.pickle')
    if not out.endswith(formats):
        raise SystemExit(f'--out {out}: --out-item {item} is written as one '
                         f'of {", ".join(formats)}; change the suffix.')
    folder = osp.dirname(osp.abspath(out))
    try:
        os.makedirs(folder, exist_ok=True)
        if osp.isdir(out):
            raise IsADirectoryError(f'{out} is a folder')
        if osp.exists(out) and not os.access(out, os.W_OK):
            raise PermissionError(f'{out} is read-only')
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        raise SystemExit(f'--out {out} cannot be written ({e}); choose a '
                         f'writable path. Nothing was evaluated.') from None


def merge_args(cfg, args):
    """Apply the command-line switches to the config."""
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cfg.launcher = args.launcher
    return cfg


def main(argv=None):
    args = parse_args(argv)
    if args.out is None and args.out_item is not None:
        raise ValueError('--out-item needs --out')
    if args.out is not None:
        check_out(args.out, args.out_item or 'pred')
    cfg = load_config(args.config, args.cfg_options)
    cfg = merge_args(cfg, args)

    def test(runner):
        if args.out and args.out_item in (None, 'pred'):
            runner.test_evaluator.metrics.append(
                DumpResults(out_file_path=args.out))
        return runner.test()

    metrics, _ = run_runner(cfg, 'testing', test)
    if args.out and args.out_item == 'metrics':
        mmengine.dump(metrics, args.out)
    return metrics


if __name__ == '__main__':
    main()
