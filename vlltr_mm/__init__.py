"""vlltr_mm: VL-LTR for MMPretrain.

Importing this package registers every component (datasets, samplers,
models, hooks, metrics) into :mod:`mmpretrain.registry`, registers the
VL-LTR configs in MMPretrain's model index (``list_models('*vlltr*')``,
``get_model``, ``inference_model``), makes MMEngine checkpoints
loadable under ``torch.load(weights_only=True)``, and lets MMEngine find
``mmpretrain::`` configs when setuptools no longer ships ``pkg_resources``
(:mod:`vlltr_mm.utils.package_lookup`).
"""
try:
    import mmcv  # noqa: F401
except ImportError as e:  # pragma: no cover - depends on the environment
    raise ImportError(
        'vlltr_mm needs mmcv, which MMPretrain uses but does not install: '
        'pip install "mmcv-lite>=2.0.0,<2.3" (enough: no compiled ops are '
        'used), or a full mmcv 2.x build (e.g. `mim install "mmcv>=2.0.0"`'
        '). Install one of the two, not both.') from e

from .utils.checkpoint import register_checkpoint_safe_globals  # noqa: E402
from .utils.package_lookup import (  # noqa: E402
    patch_mmengine_package_lookups,
)

# Before anything parses a config: `mmpretrain::` inheritance without
# pkg_resources (setuptools >= 81).
patch_mmengine_package_lookups()
register_checkpoint_safe_globals()

from . import datasets, engine, evaluation, models  # noqa: E402,F401
from .utils.model_index import register_model_index  # noqa: E402
from .version import __version__  # noqa: E402

register_model_index()

__all__ = [
    '__version__', 'patch_mmengine_package_lookups',
    'register_checkpoint_safe_globals', 'register_model_index'
]
