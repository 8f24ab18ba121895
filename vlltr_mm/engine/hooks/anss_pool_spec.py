"""The options of the AnSS image pool I' (VL-LTR §3.3), checked once.

``AnchorSentenceSelectionHook(pool=dict(...))`` takes these keys; missing
ones get :data:`POOL_DEFAULTS` (each image of the val split once, with the
evaluation pipeline: the authors' pool for ImageNet-LT / Places-LT). The
authors' iNaturalist 2018 pool is ``dict(split='train', max_per_class=50,
mode='first', draw='sqrt', pipeline='train', seed=0)``: the first 50
training images per class, drawn with square-root weights as their
training loader does, with the training augmentation.

``split``
    ``'val'``, ``'train'`` or ``'test'``: which dataloader's dataset.
``max_per_class``
    K (int >= 1) images per class, or None for the whole split.
``mode``
    ``'first'`` (each class's first K in list order) or ``'random'`` (a
    seeded uniform K).
``draw``
    None (each chosen image once) or ``'sqrt'`` (as many draws with
    replacement as images chosen, weight ``1 / sqrt(n_c)`` with ``n_c``
    the class's count among the chosen images).
``pipeline``
    ``'val'`` (the val / test dataloader's pipeline), ``'train'`` (the
    train dataloader's) or an explicit list of transforms.
``seed``
    int >= 0: seeds ``mode='random'``, the draw and every pool image's
    augmentation.
``dataset``
    Optional dataset config that replaces the split's.
"""
import copy
from typing import Optional

POOL_DEFAULTS = dict(
    split='val',
    max_per_class=50,
    mode='first',
    draw=None,
    pipeline='val',
    seed=0,
    dataset=None)
_CHOICES = dict(
    split=('val', 'train', 'test'),
    mode=('first', 'random'),
    draw=(None, 'sqrt'))


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def check_pool_spec(pool: Optional[dict]) -> dict:
    """The hook's ``pool`` argument with defaults, or a ValueError.

    Args:
        pool (dict, optional): The keys above; None for all defaults.

    Returns:
        dict: Every key of :data:`POOL_DEFAULTS`, validated (a deep copy).
    """
    where = 'AnchorSentenceSelectionHook(pool=...)'
    if pool is not None and not isinstance(pool, dict):
        raise ValueError(f'{where} must be a dict, got {type(pool).__name__}')
    unknown = sorted(set(pool or {}) - set(POOL_DEFAULTS))
    if unknown:
        raise ValueError(f'{where}: unknown keys {unknown}; the keys are '
                         f'{sorted(POOL_DEFAULTS)}')
    spec = copy.deepcopy(POOL_DEFAULTS)
    spec.update(copy.deepcopy(dict(pool or {})))
    for key, choices in _CHOICES.items():
        if spec[key] not in choices:
            raise ValueError(f'{where}: {key} must be one of {choices}, got '
                             f'{spec[key]!r}')
    k = spec['max_per_class']
    if k is not None and not (_is_int(k) and k >= 1):
        raise ValueError(f'{where}: max_per_class must be an int >= 1 or '
                         f'None (whole split), got {k!r}')
    if not (_is_int(spec['seed']) and spec['seed'] >= 0):
        raise ValueError(f'{where}: seed must be an int >= 0, got '
                         f"{spec['seed']!r}")
    pipeline = spec['pipeline']
    if isinstance(pipeline, (list, tuple)):
        if not pipeline or not all(
                isinstance(t, dict) and 'type' in t for t in pipeline):
            raise ValueError(
                f'{where}: an explicit pipeline must be a non-empty list of '
                f"transform configs with a 'type', got {pipeline!r}")
    elif pipeline not in ('val', 'train'):
        raise ValueError(f"{where}: pipeline must be 'val', 'train' or a "
                         f'list of transform configs, got {pipeline!r}')
    if spec['dataset'] is not None and not isinstance(spec['dataset'], dict):
        raise ValueError(f'{where}: dataset must be a dataset config dict '
                         f"or None, got {spec['dataset']!r}")
    return spec


def pool_options(spec: dict) -> str:
    """The pool's options as one readable artifact key entry.

    The explicit pipeline and dataset contents are hashed in other key
    entries; here they only read ``custom``.

    Args:
        spec (dict): A :func:`check_pool_spec` result.

    Returns:
        str: e.g. ``'split=train max_per_class=50 mode=first draw=sqrt
        pipeline=train seed=0 dataset=split'``.
    """
    pipeline = spec['pipeline'] if isinstance(spec['pipeline'],
                                              str) else 'custom'
    dataset = 'split' if spec['dataset'] is None else 'custom'
    return (f"split={spec['split']} max_per_class={spec['max_per_class']} "
            f"mode={spec['mode']} draw={spec['draw']} pipeline={pipeline} "
            f"seed={spec['seed']} dataset={dataset}")
