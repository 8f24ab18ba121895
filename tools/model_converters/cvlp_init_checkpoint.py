"""Save a CVLP config's initial model as a stage-1 checkpoint.

Stage 2 (AnSS + LGR) starts from a stage-1 checkpoint with ``backbone.*``,
``text_encoder.*`` and ``logit_scale`` entries. This tool writes one for the
model *before* CVLP training (the CLIP weights the config loads), so the
LGR configs can run directly on CLIP: the paper's Table 4 #2 ("w/o
pre-training"). The model is built and initialised as ``Runner`` does
(``init_weights()``), then saved in MMEngine's checkpoint format.

Example::

    python tools/model_converters/cvlp_init_checkpoint.py \\
        configs/vlltr/cvlp_r50_imagenet-lt.py work_dirs/cvlp_r50_init.pth
    python tools/train.py configs/vlltr/lgr_r50_imagenet-lt.py \\
        --cfg-options load_from=work_dirs/cvlp_r50_init.pth
"""
import argparse
import os.path as osp
import time

import torch

from vlltr_mm.utils.files import atomic_write
from vlltr_mm.utils.tool_config import add_cfg_options, load_config


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Save the initial model of a CVLP config as a stage-1 '
        'checkpoint (Table 4 #2: LGR without CVLP).')
    parser.add_argument('config', help='a CVLP config')
    parser.add_argument('out', help='output checkpoint (.pth)')
    add_cfg_options(parser)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    cfg = load_config(args.config, args.cfg_options)
    from mmpretrain.registry import MODELS
    from mmpretrain.utils import register_all_modules
    register_all_modules(init_default_scope=True)
    model_cfg = cfg.model.copy()
    # As Runner.build_model: the config's data preprocessor joins the model.
    model_cfg.setdefault('data_preprocessor', cfg.get('data_preprocessor'))
    model = MODELS.build(model_cfg)
    model.init_weights()
    state = model.state_dict()
    missing = [p for p in ('backbone.', 'text_encoder.', 'logit_scale')
               if not any(k.startswith(p) for k in state)]
    if missing:
        raise ValueError(f'{args.config} does not build a CVLP-like model: '
                         f'no {missing} weights')
    meta = dict(config=osp.abspath(args.config), epoch=0, iter=0,
                note='initial weights, no CVLP training',
                time=time.strftime('%Y%m%d_%H%M%S'))
    with atomic_write(args.out) as f:
        torch.save(dict(meta=meta, state_dict=state), f)
    print(f'saved the initial {type(model).__name__} of {args.config} '
          f'({len(state)} tensors) to {args.out}')


if __name__ == '__main__':
    main()
