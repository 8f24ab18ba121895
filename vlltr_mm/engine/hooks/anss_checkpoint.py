"""The stage-1 (CVLP) checkpoint that anchor sentence selection reads.

AnSS (VL-LTR §3.3) embeds sentences and pool images with the *stage-1*
towers, whatever the stage-2 model has loaded or trained since. This module
finds that checkpoint and loads its parts through MMEngine's prefix loading;
every error names the file.
"""
import os.path as osp
from functools import partial
from typing import Callable, Optional

import torch
from mmengine.runner.checkpoint import (
    _load_checkpoint,
    _load_checkpoint_with_prefix,
)

from vlltr_mm.utils.checkpoint import strip_module_prefix

_NOT_STAGE1 = ('AnSS needs a stage-1 (CVLP) checkpoint with backbone.*, '
               'text_encoder.* and logit_scale entries (train the cvlp_* '
               'config first)')


def locate_stage1(explicit: Optional[str], resumed: Optional[dict],
                  runner) -> str:
    """Path of the stage-1 checkpoint, checked to exist.

    Args:
        explicit (str, optional): The hook's ``checkpoint`` argument.
        resumed (dict, optional): The ``meta['anss']`` record of a resumed
            checkpoint; its ``checkpoint`` entry is used next.
        runner (Runner): Its ``load_from`` is used last (not when resuming:
            then ``load_from`` is the stage-2 checkpoint).

    Returns:
        str: The checkpoint path.
    """
    path = explicit
    if path is None and resumed is not None:
        path = resumed.get('checkpoint')
    if path is None and not runner._resume:
        path = runner._load_from
    if path is None:
        raise ValueError(
            'AnchorSentenceSelectionHook needs the stage-1 (CVLP) '
            'checkpoint: set `checkpoint=` in the hook or `load_from`.')
    if not osp.isfile(path):
        raise FileNotFoundError(f'stage-1 checkpoint {path!r} not found; '
                                f'{_NOT_STAGE1}.')
    return path


def _read(path: str, load: Callable[[], dict]) -> dict:
    """Run an MMEngine loader; an unreadable file is named in the error."""
    try:
        return load()
    except AssertionError:
        raise
    except Exception as e:  # zero-byte, truncated or foreign file
        raise ValueError(
            f'cannot read stage-1 checkpoint {path!r} ({type(e).__name__}: '
            f'{e}); {_NOT_STAGE1}.') from e


def _check_finite(state: dict, path: str, what: str) -> None:
    bad = [
        k for k, v in state.items()
        if v.is_floating_point() and not bool(torch.isfinite(v).all())
    ]
    if bad:
        raise ValueError(
            f'stage-1 checkpoint {path!r} has non-finite (NaN / inf) '
            f'{what} weights in {len(bad)} tensors, e.g. {bad[:5]}; the '
            'CVLP run that wrote it diverged: retrain it (lower the '
            'learning rate or disable AMP) or pick an earlier epoch.')


def load_stage1_tower(path: str, prefix: str) -> dict:
    """The ``prefix.*`` weights of the stage-1 checkpoint, prefix removed.

    Args:
        path (str): The stage-1 checkpoint.
        prefix (str): ``'backbone'`` or ``'text_encoder'`` (a DDP
            ``module.`` in front is accepted too).

    Returns:
        dict: A state dict for the tower, every tensor finite.
    """
    state = None
    # Checkpoints saved from a wrapped model carry ``module.``.
    for name in (prefix, f'module.{prefix}'):
        try:
            state = _read(
                path, partial(_load_checkpoint_with_prefix, name, path, 'cpu'))
            break
        except AssertionError:  # MMEngine's "prefix not in the model"
            continue
    if state is None:
        raise KeyError(f'{path!r} has no {prefix}.* weights; {_NOT_STAGE1}')
    _check_finite(state, path, prefix)
    return state


def load_stage1_logit_scale(path: str) -> float:
    """The stage-1 ``logit_scale`` (log of the CLIP 1/τ) of ``path``."""
    ckpt = _read(path, partial(_load_checkpoint, path, 'cpu'))
    state = strip_module_prefix(ckpt.get('state_dict', ckpt))
    if 'logit_scale' not in state:
        raise KeyError(f'{path!r} has no logit_scale entry; {_NOT_STAGE1}')
    _check_finite(dict(logit_scale=state['logit_scale']), path,
                  'logit_scale')
    return float(state['logit_scale'])
