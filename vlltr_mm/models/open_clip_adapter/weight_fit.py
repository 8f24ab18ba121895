"""Whether a weights state dict fits a model, said in one message.

torch's ``load_state_dict`` stops at the first kind of problem and names
no file; these helpers list every missing, unexpected and mis-shaped (and
optionally mis-typed) key at once, for the loaders of open_clip weights
(:mod:`.factory`) and of the demo model's encoders (``vlltr_mm.demo``),
which put the file name in front, and for the strict loading of our
classifiers (:mod:`vlltr_mm.models.classifiers.strict_load`).
"""
from typing import List, Sequence, Set

from torch import nn

from vlltr_mm.utils.checkpoint import list_keys, state_dict_mismatch


def derived_keys(model: nn.Module) -> Set[str]:
    """Keys of the buffers ``model`` rebuilds itself (non-persistent ones,
    e.g. a causal mask or position ids) that weight files may still hold."""
    return {
        f'{name}.{buf}' if name else buf
        for name, module in model.named_modules()
        for buf in module._non_persistent_buffers_set
    }


def mismatch_lines(missing: Sequence[str], unexpected: Sequence[str],
                   mismatched: Sequence[str],
                   mismatch_kind: str = 'shape mismatches') -> List[str]:
    """``['missing keys (2): a, b', ...]``, one line per non-empty kind."""
    return [
        f'{name} ({len(keys)}): {list_keys(keys)}'
        for name, keys in (('missing keys', missing),
                           ('unexpected keys', unexpected),
                           (mismatch_kind, mismatched)) if keys
    ]


def fit_problems(model_state: dict, state: dict,
                 check_dtype: bool = False) -> List[str]:
    """What keeps ``state`` from loading into a model, one item per kind.

    Args:
        model_state (dict): The model's state dict.
        state (dict): The weights to load.
        check_dtype (bool): Also report tensors of another dtype (which
            ``load_state_dict`` would cast silently). Defaults to False.

    Returns:
        list[str]: E.g. ``['missing keys (2): a, b']``; empty if it fits.
    """
    missing, unexpected, mismatched = state_dict_mismatch(model_state, state)
    kind = 'shape mismatches'
    if check_dtype:
        kind = 'shape / dtype mismatches'
        mismatched += [
            f'{k}: checkpoint {state[k].dtype} vs model {model_state[k].dtype}'
            for k in sorted(set(state) & set(model_state))
            if state[k].dtype != model_state[k].dtype
        ]
    return mismatch_lines(missing, unexpected, mismatched, kind)
