"""Check that a data root holds everything a config reads, before training.

For each split of the config (train, val, test) the dataset is built as
the run would build it, without transforms: the list file or iNat JSON
must parse, its labels must fit the classes of the labels file
(``labels.txt``, ``categories.json``), and every split must name the same
classes. Every listed image must exist and, unless ``--skip-images``,
decode as the pipeline's ``LoadImageFromFile`` would (the decoding of
``check_images.py``, in ``--workers`` processes). The evaluators'
``train_ann_file`` (many / medium / few split) must read. Every class-text
corpus must find its labels file, name the dataset's classes in the
dataset's order, and have a description per class; a class without one
is a warning, since it falls back to the prompts alone.

Problems name the file and line (or JSON entry) at fault. Exit status: 0
if nothing is wrong (warnings allowed), 1 if something is, 2 if the
config cannot be read.

Examples::

    python tools/data/check_data_root.py configs/vlltr/cvlp_r50_imagenet-lt.py
    python tools/data/check_data_root.py configs/vlltr/lgr_r50_inat2018.py \\
        --cfg-options data_root=/datasets/inat2018 --workers 16
"""
import argparse
import contextlib
import os.path as osp
import sys
import warnings
from typing import List, Optional

import numpy as np
from check_images import listed_images
from mmengine.config import Config
from mmpretrain.registry import DATASETS
from text_root_check import check_corpus, find_corpora

import vlltr_mm  # noqa: F401 (registers the datasets; see package_lookup)
from vlltr_mm.datasets import LongTailListDataset
from vlltr_mm.datasets.annotation_io import count_classes_from_file
from vlltr_mm.datasets.image_check import decode_settings, find_bad_images
from vlltr_mm.utils.tool_config import add_cfg_options, load_config

SPLITS = ('train', 'val', 'test')
#: Bad images listed per split.
SHOWN = 20
HINT = 'see docs/data_preparation.md'


class Findings:
    """What the checks found, printed as found and counted."""

    def __init__(self) -> None:
        self.errors = 0
        self.warnings = 0

    def ok(self, message: str) -> None:
        print(f'ok: {message}')

    def warn(self, message: str) -> None:
        self.warnings += 1
        print(f'warning: {message}')

    def error(self, message: str) -> None:
        self.errors += 1
        print(f'error: {message}')

    def failed(self, where: str, exc: Exception, hint: str = HINT) -> None:
        """An error from an exception; a missing file says just that."""
        missing = isinstance(exc, FileNotFoundError) and exc.filename
        self.error(f'{where}: ' + (f'{exc.filename} does not exist' if
                                   missing else str(exc)) + f' ({hint})')

    @contextlib.contextmanager
    def capture_warnings(self):
        """Report the library's ``UserWarning``s (empty classes, names
        that differ) as warnings of this check."""
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always', UserWarning)
            yield
        for w in caught:
            if issubclass(w.category, UserWarning):
                self.warn(str(w.message))
            else:
                warnings.showwarning(w.message, w.category, w.filename,
                                     w.lineno)


def split_dataset_config(cfg: Config, split: str) -> Optional[dict]:
    """The image dataset of a split, unwrapped from ``ClassTextDataset``
    and other wrappers; None if the config has no such split."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader or not isinstance(loader.get('dataset'), dict):
        return None
    ds = loader['dataset']
    while 'ann_file' not in ds and isinstance(ds.get('dataset'), dict):
        ds = ds['dataset']
    return ds


def build_split(split: str, ds_cfg: dict, found: Findings):
    """Build the split's dataset as training would, minus the transforms
    and the per-image checks done here; None (and an error) if it fails."""
    built = dict(ds_cfg, pipeline=[], lazy_init=False, serialize_data=False,
                 check_files=False, verify_images=False)
    try:
        with found.capture_warnings():
            ds_type = ds_cfg.get('type')
            if not isinstance(ds_type, type):
                ds_type = DATASETS.get(ds_type) or object
            if not issubclass(ds_type, LongTailListDataset):
                found.warn(f'{split}: dataset type {ds_cfg.get("type")!r} '
                           'is not checked (only LongTailListDataset and '
                           'INaturalist2018 are)')
                return None
            dataset = DATASETS.build(built)
    except (OSError, ValueError, UnicodeError, KeyError) as e:
        found.failed(split, e)
        return None
    counts = dataset.class_counts
    found.ok(f'{split}: {dataset.ann_file}: {len(dataset)} images, '
             f'{len(dataset.CLASSES)} classes ({counts.max()} .. '
             f'{counts.min()} images per class)')
    return dataset


def check_split_images(split: str, dataset, decode: dict, args,
                       found: Findings) -> None:
    """Every listed image exists and, unless ``--skip-images``, decodes."""
    paths, where = listed_images(dataset.ann_file, dataset.img_prefix)
    exists = np.fromiter(map(osp.isfile, paths), bool, len(paths))
    present = np.flatnonzero(exists)
    problems = [(i, 'does not exist')
                for i in np.flatnonzero(~exists)[:SHOWN].tolist()]
    bad = []
    if not args.skip_images:
        bad = find_bad_images([paths[i] for i in present], args.workers,
                              progress=not args.no_progress, **decode)
        problems += [(int(present[k]), why) for k, why in bad[:SHOWN]]
    missing = len(paths) - present.size
    if missing or bad:
        kinds = ', '.join(f'{n} {kind}' for n, kind in (
            (missing, 'missing'), (len(bad), 'undecodable')) if n)
        found.error(
            f'{split}: {missing + len(bad)} of {len(paths)} listed images '
            f'cannot be loaded ({kinds}; images under '
            f'{dataset.img_prefix or "."}); replace the files or remove '
            'their lines:\n' + '\n'.join(
                f'  {where[i]}: {paths[i]} {why}'
                for i, why in sorted(problems)[:SHOWN]))
    elif args.skip_images:
        found.ok(f'{split}: all {len(paths)} listed images exist (not '
                 'decoded: --skip-images)')
    else:
        found.ok(f'{split}: all {len(paths)} listed images decode')


def check_evaluators(cfg: Config, train_ann: Optional[str],
                     found: Findings) -> None:
    """The many / medium / few split's ``train_ann_file`` reads."""
    seen = set()
    for key in ('val_evaluator', 'test_evaluator'):
        evaluators = cfg.get(key)
        if not isinstance(evaluators, (list, tuple)):
            evaluators = [evaluators]
        for ev in evaluators:
            ann = ev.get('train_ann_file') if isinstance(ev, dict) else None
            if not ann or ann in seen:
                continue
            seen.add(ann)
            try:
                count_classes_from_file(ann, ev.get('num_classes'))
            except (OSError, ValueError, UnicodeError) as e:
                found.failed(f'{key}.train_ann_file', e)
                continue
            if train_ann and osp.abspath(ann) != osp.abspath(train_ann):
                found.warn(f'{key}: the many / medium / few split counts '
                           f'{ann}, not the training list {train_ann}')
            else:
                found.ok(f'{key}: many / medium / few split from {ann}')


def check_config(cfg: Config, args, found: Findings) -> None:
    """Run every check on the loaded config."""
    datasets, first = {}, None
    for split in SPLITS:
        ds_cfg = split_dataset_config(cfg, split)
        if ds_cfg is None:
            continue
        same = next((s for s, (c, _) in datasets.items() if c == ds_cfg),
                    None)
        if same is not None:
            found.ok(f'{split}: the same dataset as {same}, checked above')
            continue
        dataset = build_split(split, ds_cfg, found)
        datasets[split] = (ds_cfg, dataset)
        if dataset is None:
            continue
        check_split_images(split, dataset, decode_settings(
            ds_cfg.get('pipeline', ())), args, found)
        if first is None:
            first = (split, dataset)
        elif tuple(dataset.CLASSES) != tuple(first[1].CLASSES):
            found.error(f'{split} and {first[0]} do not name the same '
                        f'classes ({len(dataset.CLASSES)} and '
                        f'{len(first[1].CLASSES)}, or in another order)')
    if not datasets:
        found.error('the config has no train/val/test dataloader to check')
    train = datasets.get('train', (None, None))[1]
    check_evaluators(cfg, train.ann_file if train else None, found)
    reference = first[1] if first else None
    for corpus in find_corpora(cfg):
        check_corpus(
            corpus, None if reference is None else list(reference.CLASSES),
            getattr(reference, 'classes_source', None), found,
            cfg.get('num_classes'))


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='the config to train or test with')
    add_cfg_options(
        parser, 'data_root=/datasets/imagenet text_root=/datasets/text')
    parser.add_argument('--skip-images', action='store_true',
                        help='check that images exist, do not decode them')
    parser.add_argument('--workers', type=int, default=None,
                        help='decoding processes (default: all CPUs)')
    parser.add_argument('--no-progress', action='store_true')
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    args = parse_args(argv)
    try:
        cfg = load_config(args.config, args.cfg_options)
    except Exception as e:  # a config can fail in many ways
        print(f'error: cannot read {args.config}: {type(e).__name__}: {e}',
              file=sys.stderr)
        return 2
    found = Findings()
    check_config(cfg, args, found)
    summary = (f'{found.errors} problem(s), {found.warnings} warning(s) in '
               f'the data of {args.config}')
    if found.errors:
        print(f'{summary}; fix the problems above ({HINT})', file=sys.stderr)
        return 1
    print(summary)
    return 0


if __name__ == '__main__':
    sys.exit(main())
