"""Decode every image of a dataset split before training depends on it.

Reads the split's list file (or iNaturalist JSON) from a config, or a list
file directly, decodes each image the way the pipeline's
``LoadImageFromFile`` does (``mmcv.imfrombytes``, same backend and colour
type) in worker processes with a progress bar, and prints every image that
is missing, empty or undecodable with its list file and line. Exit status:
0 if all decode, 1 if any does not, 2 if the list itself is invalid.

``--img-root`` is where the listed paths are relative to: for a list file
it defaults to the file's folder; with a config it replaces the split's
``data_root``/``data_prefix`` image folder (the list file stays the
config's), e.g. to check a copy of the images elsewhere.

Examples::

    python tools/data/check_images.py configs/vlltr/lgr_r50_imagenet-lt.py \\
        --split train --workers 16
    python tools/data/check_images.py data/imagenet/ImageNet_LT_train.txt \\
        --img-root data/imagenet
"""
import argparse
import os.path as osp
import sys
from typing import List, Optional, Tuple

from mmengine.config import Config

from vlltr_mm.datasets.annotation_io import (
    read_inat_annotations,
    read_list_annotations,
)
from vlltr_mm.datasets.image_check import decode_settings, find_bad_images


def _join(root: str, path: str) -> str:
    return path if not root or osp.isabs(path) else osp.join(root, path)


def split_from_config(config: str, split: str) -> Tuple[str, str, dict]:
    """List file, image root and decoder settings of a config's split.

    Dataset wrappers (``ClassTextDataset``, ``RepeatDataset`` ...) are
    unwrapped through their ``dataset`` key.
    """
    cfg = Config.fromfile(config)
    key = f'{split}_dataloader'
    if cfg.get(key) is None:
        raise ValueError(f'{config}: has no `{key}`; choose --split from '
                         'train, val, test')
    ds = cfg[key]['dataset']
    while 'ann_file' not in ds and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']
    if 'ann_file' not in ds:
        raise ValueError(f'{config}: `{key}.dataset` has no `ann_file`')
    root = ds.get('data_root', '') or ''
    prefix = ds.get('data_prefix', '') or ''
    if isinstance(prefix, dict):
        prefix = prefix.get('img_path', '') or ''
    return (_join(root, ds['ann_file']), _join(root, prefix),
            decode_settings(ds.get('pipeline', ())))


def listed_images(ann_file: str, img_root: str) -> Tuple[List[str],
                                                         List[str]]:
    """Image paths and their ``file:line`` (or JSON entry) locations."""
    if ann_file.lower().endswith('.json'):
        names = read_inat_annotations(ann_file).file_names
        where = [f'{ann_file}: images[{i}]' for i in range(len(names))]
    else:
        records = read_list_annotations(ann_file)
        names = [r[0] for r in records]
        where = [f'{ann_file}:{r[2]}' for r in records]
    return [_join(img_root, n) for n in names], where


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('source', metavar='CONFIG_OR_LIST',
                        help='a config (.py) or a list / JSON file')
    parser.add_argument('--split', default='train',
                        choices=['train', 'val', 'test'],
                        help='split of a config (default: train)')
    parser.add_argument('--img-root', default=None,
                        help='folder the listed paths are relative to '
                        "(default: a list file's folder, a config split's "
                        'data_root/data_prefix)')
    parser.add_argument('--workers', type=int, default=None,
                        help='processes (default: all CPUs)')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        if args.source.endswith('.py'):
            ann_file, img_root, decode = split_from_config(
                args.source, args.split)
            if args.img_root is not None:
                print(f'images under {args.img_root} (--img-root), not the '
                      f"config's {img_root or '.'}")
                img_root = args.img_root
        else:
            ann_file, decode = args.source, {}
            img_root = (args.img_root if args.img_root is not None else
                        osp.dirname(args.source))
        paths, where = listed_images(ann_file, img_root)
    except (OSError, ValueError, UnicodeError) as e:
        print(f'error: {e}', file=sys.stderr)
        return 2
    bad = find_bad_images(paths, args.workers, progress=not args.no_progress,
                          **decode)
    for i, why in bad:
        print(f'{where[i]}: {paths[i]} {why}')
    if bad:
        print(f'{len(bad)} of {len(paths)} images of {ann_file} cannot be '
              'loaded; replace the files or remove their lines',
              file=sys.stderr)
        return 1
    print(f'all {len(paths)} images of {ann_file} decode')
    return 0


if __name__ == '__main__':
    sys.exit(main())
