"""vlltr_mm: VL-LTR for MMPretrain.

Importing this package registers every component (datasets, samplers,
models, hooks, metrics) into :mod:`mmpretrain.registry`, and makes
MMEngine checkpoints loadable under ``torch.load(weights_only=True)``.
"""
from .utils.checkpoint import register_checkpoint_safe_globals

register_checkpoint_safe_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401
from .version import __version__  # noqa: E402

__all__ = ['__version__', 'register_checkpoint_safe_globals']
