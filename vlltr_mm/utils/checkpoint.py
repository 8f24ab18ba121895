"""Load MMEngine checkpoints safely (``weights_only``), naming the file.

Since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, which
mmengine 0.10.x checkpoints do not pass: their ``message_hub`` holds
:class:`~mmengine.logging.HistoryBuffer` objects with numpy arrays, which
may pickle ``getattr(HistoryBuffer, 'min')`` calls. So the numpy /
mmengine types a checkpoint legitimately holds (arrays, scalars, dtypes,
``HistoryBuffer``, ``Config`` / ``ConfigDict``) are allow-listed with
:func:`torch.serialization.add_safe_globals`, and ``builtins.getattr``
(never allow-listed: it reaches any attribute) maps to a function that
only returns ``HistoryBuffer`` statistics methods. Anything else is still
refused.

MMEngine's loader of local files (the ``''`` scheme of
:class:`~mmengine.runner.CheckpointLoader`, used by the Runner and by
MMPretrain's ``get_model`` / inferencers alike) is replaced by
:func:`load_local_checkpoint`: it checks the file first
(:func:`check_checkpoint_file`) and names it, with the fix, when torch
refuses or cannot read it. The other checks of
:class:`~vlltr_mm.engine.hooks.CheckpointCheckHook` live here too:
:func:`state_dict_mismatch` (keys and shapes) and :func:`nonfinite_keys`.
"""
import json
import os.path as osp
import pickle
import re
import shlex
import struct
import zipfile
from collections import OrderedDict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config, ConfigDict
from mmengine.logging.history_buffer import HistoryBuffer
from mmengine.runner import CheckpointLoader

_REGISTERED = False
#: Key of the root module's state-dict metadata that names the file it was
#: loaded from (read by ``StrictLoadMixin`` for its message).
SOURCE_KEY = 'vlltr_mm.checkpoint_file'
#: What torch.load raises for a damaged file (zip or legacy format).
_DAMAGED = (pickle.UnpicklingError, EOFError, IndexError, struct.error,
            RuntimeError)
_UNREADABLE = re.compile(r'PytorchStreamReader|zip archive|unexpected EOF')


def _numpy_safe_globals() -> list:
    """Numpy callables and types that arrays, scalars and dtypes pickle to."""
    try:  # numpy >= 2
        from numpy._core import multiarray
    except ImportError:  # pragma: no cover - numpy 1.x
        from numpy.core import multiarray
    found = [multiarray._reconstruct, multiarray.scalar, np.ndarray, np.dtype]
    # numpy 1.x wrote these under ``numpy.core``; numpy 2 under ``_core``.
    found += [(f, f'numpy.core.multiarray.{f.__name__}')
              for f in (multiarray._reconstruct, multiarray.scalar)]
    # numpy >= 1.25 pickles dtypes through per-dtype classes such as
    # ``numpy.dtypes.Float64DType``.
    return found + [v for v in vars(getattr(np, 'dtypes', np)).values()
                    if isinstance(v, type) and issubclass(v, np.dtype)]


def _history_buffer_getstate(self) -> dict:
    """Pickle the buffer's data only, never its statistics-method table."""
    state = dict(self.__dict__)
    state.pop('statistics_methods', None)
    return state


def _history_buffer_attr(obj, name: str):
    """``builtins.getattr`` in a checkpoint: HistoryBuffer methods only."""
    methods = {'min', 'max', 'current', 'mean'}
    if obj is HistoryBuffer and name in methods.union(
            HistoryBuffer._statistics_methods):
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'getattr({obj!r}, {name!r}) is not allowed in a checkpoint')


def checkpoint_safe_globals() -> list:
    """Return the globals allow-listed for MMEngine checkpoints.

    Returns:
        list: Types and numpy reconstructors needed by MMEngine's
        ``message_hub`` and ``meta`` entries (items as
        :func:`torch.serialization.add_safe_globals` takes them).
    """
    # ``bytes``: numpy pickles an empty array's buffer as ``bytes()``.
    return [HistoryBuffer, Config, ConfigDict, bytes,
            (_history_buffer_attr, 'builtins.getattr')
            ] + _numpy_safe_globals()


def register_checkpoint_safe_globals() -> None:
    """Allow-list MMEngine checkpoint contents for ``weights_only`` loading
    and install :func:`load_local_checkpoint` as MMEngine's local loader.

    Idempotent; called when :mod:`vlltr_mm` is imported. The allow-list is
    skipped on torch versions without
    :func:`torch.serialization.add_safe_globals`.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    HistoryBuffer.__getstate__ = _history_buffer_getstate
    add_safe_globals = getattr(torch.serialization, 'add_safe_globals', None)
    if add_safe_globals is not None:
        add_safe_globals(checkpoint_safe_globals())
    CheckpointLoader.register_scheme('', load_local_checkpoint, force=True)
    _REGISTERED = True


def _refused(path: str, err: Exception) -> Optional[str]:
    """Which object torch's restricted unpickler refused in ``path``, and
    the fix; None when it refused no object (a damaged file)."""
    name = re.search(r'GLOBAL (\S+) was not an allowed', str(err))
    why = re.search(r'(Trying to call reduce|Can only create new object|'
                    r'getattr\().*', str(err))
    if 'Weights only load failed' not in str(err) or not (name or why):
        return None
    what = f'a Python object ({name.group(1)})' if name else why.group(0)
    out = '{}_weights{}'.format(*osp.splitext(path))
    # JSON strings are Python literals too, in double quotes (shell-safe).
    code = (f'import torch; c = torch.load({json.dumps(path)}, map_location='
            '"cpu", weights_only=False); m = c.get("meta") or {}; '
            'torch.save({"state_dict": c.get("state_dict", c), "meta": '
            '{k: m[k] for k in ("dataset_meta",) if k in m}}, '
            f'{json.dumps(out)})')
    return (f'Checkpoint {path} holds {what} beside its weights, which '
            'torch.load(weights_only=True) refuses to unpickle (it could '
            'run code); a script saved Python objects into it. If you '
            'trust the file, keep its weights and class names once:\n'
            f'  python -c {shlex.quote(code)}\nand load {out} instead (for '
            'load_from, testing or inference; it has no optimizer state to '
            '--resume from).')


def load_local_checkpoint(filename: str, map_location=None):
    """MMEngine's local-file loader, with the file named in every error.

    :class:`~mmengine.runner.CheckpointLoader`'s ``''`` scheme, used by
    the Runner and MMPretrain's APIs; ``torch.load`` keeps its default
    ``weights_only`` (True since torch 2.6). The path is put in the state
    dict's root metadata (``SOURCE_KEY``) for the model's load checks.

    Args:
        filename (str): Local checkpoint path (``~`` expanded).
        map_location (optional): As for :func:`torch.load`.

    Returns:
        dict: The checkpoint.

    Raises:
        FileNotFoundError: If the file does not exist.
        RuntimeError: If it is empty, truncated or unreadable.
        pickle.UnpicklingError: If torch refuses an object in it (the
            command that keeps the weights given).
    """
    path = osp.expanduser(filename)
    check_checkpoint_file(path)
    try:
        checkpoint = torch.load(path, map_location=map_location)
    except _DAMAGED as e:
        refusal = _refused(path, e)
        if refusal:
            raise pickle.UnpicklingError(refusal) from e
        # Other RuntimeErrors (e.g. a CUDA map_location) are not the file's.
        if isinstance(e, RuntimeError) and not _UNREADABLE.search(str(e)):
            raise
        why = str(e).split('WeightsUnpickler error:')[-1].strip()
        raise RuntimeError(
            f'Checkpoint {path} is truncated, corrupt or not a checkpoint '
            f'({type(e).__name__}: {why.splitlines()[0] if why else "-"})'
        ) from e
    return _with_source(checkpoint, path)


def _with_source(checkpoint, path: str):
    """Record ``path`` in the root metadata of the checkpoint's state dict
    (kept by MMEngine's ``load_checkpoint`` through key renaming)."""
    if not isinstance(checkpoint, dict):
        return checkpoint
    nested = isinstance(checkpoint.get('state_dict'), dict)
    state = checkpoint['state_dict'] if nested else checkpoint
    if getattr(state, '_metadata', None) is None:
        # A plain dict cannot carry metadata; an OrderedDict copy can.
        state = OrderedDict(state)
        state._metadata = OrderedDict()
    state._metadata.setdefault('', {})[SOURCE_KEY] = path
    if nested:
        checkpoint['state_dict'] = state
    return checkpoint if nested else state


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
                                f'checkpoint argument / pretrained=.')
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
