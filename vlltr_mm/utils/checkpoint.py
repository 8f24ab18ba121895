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
"""
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
