"""Render the per-class report of an AnSS artifact (VL-LTR §3.3).

The report opens with a summary: an overall line (anchors kept, prompts
vs descriptions, overlap with the cut-off rule's first M sentences), a
sentence on whether the L_lin scores separate the sentences at all, and a
table with one row per class. Then, for every class: its name, the anchor
sentences AnSS kept (best first, with their L_lin of Eq. 2), then the ones
it dropped, prompts and descriptions marked apart.
``AnchorSentenceSelectionHook`` writes the same report next to its
artifact; this tool renders it for any artifact.

The corpus comes from CONFIG_OR_CORPUS: an LGR config (the corpus of its
``AnchorSentenceSelectionHook``, or a top-level ``corpus``), or a file
holding a ``ClassTextCorpus`` config (``.py`` / ``.json`` / ``.yaml``).
It must be the corpus the artifact was computed on (same fingerprint).

Examples::

    python tools/analysis/anss_report.py \\
        work_dirs/lgr_r50_imagenet-lt/anss_anchors.pth \\
        configs/vlltr/lgr_r50_imagenet-lt.py --out anss_report.md
"""
import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from mmpretrain.registry import TASK_UTILS

import vlltr_mm  # noqa: F401  (registers ClassTextCorpus)
from vlltr_mm.engine.hooks.anss_report import (
    check_corpus,
    report_path,
    write_report,
)
from vlltr_mm.engine.hooks.anss_summary import summary_lines
from vlltr_mm.utils.tool_config import add_cfg_options, load_config

HOOK = 'AnchorSentenceSelectionHook'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('artifact', help='AnSS artifact (anss_anchors.pth)')
    parser.add_argument('config', help='LGR config or corpus config file')
    parser.add_argument(
        '--out', help='Markdown file (default: next to the artifact, '
        '<artifact>_report.md)')
    add_cfg_options(parser, 'text_root=/data/text/imagenet-lt')
    return parser.parse_args(argv)


def corpus_config(cfg: Config, path: str) -> dict:
    """The ``ClassTextCorpus`` config inside ``cfg`` (read from ``path``)."""
    if cfg.get('type') == 'ClassTextCorpus':
        return cfg.to_dict()
    for hook in cfg.get('custom_hooks') or []:
        if hook.get('type') == HOOK and 'corpus' in hook:
            return hook['corpus']
    if isinstance(cfg.get('corpus'), dict):
        return cfg['corpus']
    raise ValueError(f'{path}: no corpus found: expected a custom_hooks '
                     f"entry of type '{HOOK}' with corpus=..., a top-level "
                     "`corpus`, or a file with type='ClassTextCorpus'")


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        art = torch.load(args.artifact, map_location='cpu',
                         weights_only=True)
        meta = art['meta']
    except Exception as e:
        sys.exit(f'error: cannot read AnSS artifact {args.artifact}: {e}')
    cfg = load_config(args.config, args.cfg_options)
    corpus_cfg = dict(corpus_config(cfg, args.config))
    if corpus_cfg.get('class_names') is None and \
            corpus_cfg.get('labels_file') is None:
        # As the hook does: class names from the training set, which the
        # artifact records.
        if not meta.get('class_names'):
            sys.exit(f'error: {args.config}: the corpus names no classes '
                     f'and {args.artifact} does not record them; set '
                     'class_names or labels_file in the corpus config')
        corpus_cfg['class_names'] = list(meta['class_names'])
    corpus = TASK_UTILS.build(corpus_cfg)
    try:
        check_corpus(art, corpus, f'{args.artifact} with {args.config}')
    except ValueError as e:
        sys.exit(f'error: {e}')
    out = args.out or report_path(args.artifact)
    write_report(out, art, corpus)
    print(f'AnSS report of {corpus.num_classes} classes written to '
          f'{osp.abspath(out)}')
    for line in summary_lines(art, corpus):
        print(line)
    return 0


if __name__ == '__main__':
    sys.exit(main())
