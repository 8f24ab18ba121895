"""Make MMEngine checkpoints loadable under ``torch.load(weights_only=True)``.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and
mmengine 0.10.x neither passes ``weights_only`` nor saves checkpoints that
the restricted unpickler accepts: the ``message_hub`` entry holds
:class:`~mmengine.logging.HistoryBuffer` objects with numpy arrays, and each
buffer pickles its *class-level* table of statistics methods as
``getattr(HistoryBuffer, 'min')`` calls. ``getattr`` must never be
allow-listed (it would let a checkpoint reach any attribute), so instead:

* the few numpy / mmengine types a checkpoint legitimately contains are
  allow-listed with :func:`torch.serialization.add_safe_globals`;
* :class:`HistoryBuffer` stops pickling the method table (it is class state
  that every process rebuilds at import, and custom statistics are
  registered by decorators in code, so nothing is lost).

Safety stays on: anything else in a checkpoint is still refused by torch.
Checkpoints written by a plain mmengine (without this plugin imported)
still contain the ``getattr`` calls; re-save them with the plugin, or load
only their ``state_dict`` through a trusted path.

The checks of :class:`~vlltr_mm.engine.hooks.CheckpointCheckHook` live here
too: :func:`check_checkpoint_file` (empty / truncated files, before
``torch.load``), :func:`state_dict_mismatch` (keys and shapes against a
model) and :func:`nonfinite_keys` (NaN / Inf tensors).
"""
import os.path as osp
import zipfile
from typing import Dict, List, Sequence, Tuple

import numpy as np
import torch
from mmengine.logging.history_buffer import HistoryBuffer

_REGISTERED = False


def _numpy_safe_globals() -> list:
    """Numpy callables and types that arrays, scalars and dtypes pickle to."""
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy >= 1.25 pickles dtypes through per-dtype classes such as
    # ``numpy.dtypes.Float64DType``.
    dtypes = getattr(np, 'dtypes', None)
    if dtypes is not None:
        found += [
            v for v in vars(dtypes).values()
            if isinstance(v, type) and issubclass(v, np.dtype)
        ]
    return found


def _history_buffer_getstate(self) -> dict:
    """Pickle the buffer's data only, never its statistics-method table."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def checkpoint_safe_globals() -> list:
    """Return the globals allow-listed for MMEngine checkpoints.

    Returns:
        list: Types and numpy reconstructors needed by MMEngine's
        ``message_hub`` and ``meta`` entries.
    """
    return [HistoryBuffer] + _numpy_safe_globals()


def register_checkpoint_safe_globals() -> None:
    """Allow-list MMEngine checkpoint contents for ``weights_only`` loading.

    Idempotent; called when :mod:`vlltr_mm` is imported. Does nothing on
    torch versions without :func:`torch.serialization.add_safe_globals`.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(checkpoint_safe_globals())
    _REGISTERED = True


def strip_module_prefix(state_dict: dict) -> dict:
    """Drop the ``'module.'`` key prefix that (M)DDP wrappers save.

    Args:
        state_dict (dict): A state dict, prefixed or not.

    Returns:
        dict: The same tensors under unprefixed keys (a new dict).
    """
    prefix = 'module.'
    return {(k[len(prefix):] if k.startswith(prefix) else k): v
            for k, v in state_dict.items()}


def check_checkpoint_file(path: str) -> None:
    """Refuse a local checkpoint file that cannot be a whole checkpoint.

    Cheap checks done before ``torch.load`` so that the error names the
    file: it exists, it is not empty, and a zip-format file (what
    ``torch.save`` writes since torch 1.6) still has its central directory
    (a truncated copy or an interrupted save loses it). URLs and other
    remote names are left to their loader.

    Args:
        path (str): Checkpoint path.

    Raises:
        FileNotFoundError: If the file does not exist.
        RuntimeError: If it is empty or truncated.
    """
    if '://' in path:
        return
    if not osp.isfile(path):
        raise FileNotFoundError(f'Checkpoint {path} does not exist; check '
                                f'load_from / --resume / the test '
                                f'checkpoint argument.')
    hint = ('it was not written completely (disk full, copy or save '
            'interrupted); use another checkpoint (e.g. an earlier '
            'epoch_*.pth) or copy it again.')
    if osp.getsize(path) == 0:
        raise RuntimeError(f'Checkpoint {path} is empty (0 bytes): {hint}')
    with open(path, 'rb') as f:
        zipped = f.read(4) == b'PK\x03\x04'
    if zipped:
        try:
            with zipfile.ZipFile(path):
                pass
        except zipfile.BadZipFile as e:
            raise RuntimeError(f'Checkpoint {path} is truncated or corrupt '
                               f'({e}): {hint}') from None


def state_dict_mismatch(model_state: Dict[str, torch.Tensor],
                        ckpt_state: Dict[str, torch.Tensor]
                        ) -> Tuple[List[str], List[str], List[str]]:
    """Compare a checkpoint's state dict with a model's, by key and shape.

    A model tensor with no elements is a placeholder sized by whatever it
    loads (e.g. :class:`~vlltr_mm.models.utils.class_prior.ClassPrior`'s
    counts before they are set), so it matches any shape.

    Args:
        model_state (dict): ``model.state_dict()``.
        ckpt_state (dict): The checkpoint's (unprefixed) state dict.

    Returns:
        tuple[list[str], list[str], list[str]]: Missing keys (in the model,
        not the checkpoint), unexpected keys (the other way round) and
        shape mismatches as ``'key: checkpoint (a, b) vs model (c, d)'``.
    """
    missing = sorted(set(model_state) - set(ckpt_state))
    unexpected = sorted(set(ckpt_state) - set(model_state))
    mismatched = []
    for key in sorted(set(model_state) & set(ckpt_state)):
        want, got = model_state[key], ckpt_state[key]
        if not hasattr(got, 'shape') or want.numel() == 0:
            continue
        if tuple(got.shape) != tuple(want.shape):
            mismatched.append(f'{key}: checkpoint {tuple(got.shape)} vs '
                              f'model {tuple(want.shape)}')
    return missing, unexpected, mismatched


def nonfinite_keys(state_dict: Dict[str, torch.Tensor]) -> List[str]:
    """Keys of the floating-point tensors that hold a NaN or an Inf.

    Args:
        state_dict (dict): A state dict.

    Returns:
        list[str]: The offending keys, in the state dict's order.
    """
    return [
        k for k, v in state_dict.items()
        if isinstance(v, torch.Tensor) and v.is_floating_point()
        and not bool(torch.isfinite(v).all())
    ]


def list_keys(keys: Sequence[str], limit: int = 10) -> str:
    """``'a, b, c (+N more)'``: a bounded list for error messages."""
    shown = ', '.join(keys[:limit])
    more = len(keys) - limit
    return shown + (f' (+{more} more)' if more > 0 else '')
