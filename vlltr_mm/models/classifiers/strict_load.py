"""Refuse a state dict that does not fit the whole model.

MMPretrain's ``get_model(cfg, pretrained=ckpt)``,
``ImageClassificationInferencer`` and ``inference_model`` load weights
with MMEngine's ``load_checkpoint(model, ckpt)``: ``strict=False`` and no
hooks, so a checkpoint of another stage or head is a printed warning and
the model predicts with whatever did not load left at its initial value
(a random classifier, no text tower). Both MMEngine's and torch's
``load_state_dict`` call the root module's ``_load_from_state_dict`` first,
with the whole state dict; :class:`StrictLoadMixin` checks it there.

Inside a Runner, :class:`~vlltr_mm.engine.hooks.CheckpointCheckHook`
switches this check off (``strict_load = False``) and checks the loaded
checkpoint itself, with the config's allowances for partial loads.
"""
from typing import Dict, List

import torch

from ...utils.checkpoint import SOURCE_KEY, state_dict_mismatch
from ..open_clip_adapter.weight_fit import derived_keys, mismatch_lines

_HINT = (
    'Load a checkpoint trained with this config (the same head, '
    'num_classes, num_anchors and towers). A partial load, such as the LGR '
    'stage starting from a CVLP checkpoint, belongs to a training run: '
    'tools/train.py with load_from and the allowed key prefixes in '
    'default_hooks.checkpoint_check (allow_missing / allow_unexpected / '
    'allow_mismatched). tools/test.py checks a test checkpoint and names '
    'the file. To load part of a state dict by hand, set '
    '`model.strict_load = False` first.')


def state_dict_misfit(model: torch.nn.Module,
                      state_dict: Dict[str, torch.Tensor],
                      prefix: str = '') -> List[str]:
    """Describe how ``state_dict`` fails to fit ``model``, one line a kind.

    Keys the model never loads are not counted: non-persistent buffers
    that older checkpoints may hold (the model rebuilds them) and missing
    BatchNorm ``num_batches_tracked`` counters (MMEngine's loader ignores
    them too).

    Args:
        model (nn.Module): The model about to load ``state_dict``.
        state_dict (dict): The state dict, keys under ``prefix``.
        prefix (str): Prefix of the model's keys in ``state_dict`` ('' for
            the root model). Defaults to ''.

    Returns:
        list[str]: ``'missing keys (N): a, b'``-style lines; empty when
        the state dict fits.
    """
    ckpt = {
        k[len(prefix):]: v
        for k, v in state_dict.items() if k.startswith(prefix)
    }
    missing, unexpected, mismatched = state_dict_mismatch(
        model.state_dict(), ckpt)
    rebuilt = derived_keys(model)
    missing = [k for k in missing if not k.endswith('num_batches_tracked')]
    unexpected = [k for k in unexpected if k not in rebuilt]
    return ['  ' + line
            for line in mismatch_lines(missing, unexpected, mismatched)]


def _refuse_misfit(model, state_dict, prefix, local_metadata, *args) -> None:
    """Load-state-dict pre-hook of :class:`StrictLoadMixin`."""
    if not model.strict_load:
        return
    problems = state_dict_misfit(model, state_dict, prefix)
    if problems:
        # MMEngine's loader (vlltr_mm.utils.checkpoint) names the file.
        source = (local_metadata or {}).get(SOURCE_KEY)
        where = f' from checkpoint {source}' if source else ''
        raise RuntimeError(
            f'The state dict loaded into {type(model).__name__}{where} does '
            f'not fit it:\n' + '\n'.join(problems) + '\n' + _HINT)


class StrictLoadMixin:
    """Make a model refuse state dicts whose keys or shapes do not fit.

    Put it first among the bases, e.g.
    ``class VLLTRImageClassifier(StrictLoadMixin, ImageClassifier)``. Any
    ``load_state_dict`` on the model (MMEngine's non-strict
    ``load_checkpoint`` included) raises one error listing every missing,
    unexpected and mis-shaped key before a tensor is copied. Loads into a
    submodule (e.g. a backbone's pretrained weights) are not affected.

    The check is a load-state-dict pre-hook registered once the other
    bases' ``__init__`` has returned, so it sees the keys after their
    pre-hooks (e.g. ``ImageClassifier``'s backbone ``_checkpoint_filter``)
    have renamed them.

    Attributes:
        strict_load (bool): Whether the check runs. The Runner's
            ``CheckpointCheckHook`` sets it to False on the runner's model
            and applies the config's allowances instead. Defaults to True.
    """

    strict_load: bool = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.register_load_state_dict_pre_hook(_refuse_misfit)
